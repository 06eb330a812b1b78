package reset

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/selfkube/selfkube/internal/host"
)

func TestResetRemovesOnlyWhatSelfkubeOwns(t *testing.T) {
	l := host.Layout{Root: t.TempDir()}
	touch := func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ours := filepath.Join(l.ManifestsDir(), "etcd.yaml")
	theirs := filepath.Join(l.ManifestsDir(), "my-static-pod.yaml")
	etcdData := filepath.Join(l.Root, "var/lib/etcd/member/snap/db")
	for _, p := range []string{ours, theirs, etcdData, filepath.Join(l.PKIDir(), "ca.crt"), l.KubeletConfig(), l.AdminKubeconfig()} {
		touch(p)
	}
	state, _ := json.Marshal(host.Record{Owned: []string{ours}})
	touch(filepath.Join(l.StateDir(), "init.json"))
	if err := os.WriteFile(filepath.Join(l.StateDir(), "init.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}

	planned, err := Run(context.Background(), Options{Layout: l, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ours); err != nil {
		t.Fatal("dry run removed files")
	}
	if !slices.Contains(planned, ours) || slices.Contains(planned, theirs) {
		t.Errorf("plan %v", planned)
	}
	if _, err := Run(context.Background(), Options{Layout: l}); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{ours, l.PKIDir(), l.KubeletConfig(), l.AdminKubeconfig(), l.StateDir()} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s survived reset", gone)
		}
	}
	for _, kept := range []string{theirs, etcdData} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
	if _, err := Run(context.Background(), Options{Layout: l, RemoveEtcdData: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(etcdData); !os.IsNotExist(err) {
		t.Error("--remove-etcd-data kept the data")
	}
}

func TestFlagValue(t *testing.T) {
	m := "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp2\n    - --name-other=x\n"
	if got := flagValue(m, "--name="); got != "cp2" {
		t.Errorf("flagValue = %q, want cp2", got)
	}
	if got := flagValue(m, "--data-dir="); got != "" {
		t.Errorf("flagValue of a missing flag = %q", got)
	}
}

func TestLeaveEtcdWithoutEtcd(t *testing.T) {
	name, err := LeaveEtcd(context.Background(), host.Layout{Root: t.TempDir()}, io.Discard)
	if name != "" || err != nil {
		t.Errorf("a node without etcd: %q, %v; want nothing to do", name, err)
	}
}

// The member is stopped only once every address its static pod listens on refuses: the
// loopback and node client URLs and the peer URL (etcd closes the peer listener last).
func TestListenAddressesOfTheRenderedMember(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join("..", "manifests", "testdata", "default", "bootstrap-manifests", "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := listenAddresses(string(manifest))
	want := []string{"127.0.0.1:2379", "192.0.2.10:2379", "192.0.2.10:2380"}
	if !slices.Equal(got, want) {
		t.Errorf("listen addresses %v, want %v", got, want)
	}
}
