package host

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRecordLedger(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	r, err := LoadRecord(l, "init")
	if err != nil || r.Exists() || r.IsCompleted() || r.HandedOver() {
		t.Fatalf("a fresh node: %+v, %v", r, err)
	}
	// A phase that finished before anything was written leaves no file: nothing to reset.
	if err := r.Finished("preflight"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.StateDir(), "init.json")); !os.IsNotExist(err) {
		t.Fatalf("record written before anything was owned: %v", err)
	}
	for _, p := range []string{"/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/manifests/kube-scheduler.yaml", "/etc/kubernetes/manifests/etcd.yaml"} {
		if err := r.Own(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Disown("/etc/kubernetes/manifests/kube-scheduler.yaml"); err != nil {
		t.Fatal(err)
	}
	r.HandOver = &HandOver{Started: time.Unix(1700000000, 0), TemporaryLeaders: map[string]string{"kube-scheduler": "n_1"}, Finished: true}
	r.Completed = time.Unix(1700000100, 0)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(l.StateDir(), "init.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record file: %v %v", st, err)
	}

	got, err := LoadRecord(l, "init")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Exists() || !got.IsCompleted() || !got.HandedOver() || got.HandOver.TemporaryLeaders["kube-scheduler"] != "n_1" ||
		!got.Has("preflight") || !slices.Equal(got.Owned, []string{"/etc/kubernetes/manifests/etcd.yaml"}) ||
		!got.Owns("/etc/kubernetes/manifests/etcd.yaml") || got.Owns("/etc/kubernetes/manifests/kube-scheduler.yaml") {
		t.Errorf("reloaded record %+v", got)
	}
	// Each command has its own file.
	if j, err := LoadRecord(l, "join"); err != nil || j.Exists() {
		t.Errorf("join record: %+v %v", j, err)
	}
}

func TestDamagedRecordSaysHowToRecover(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.StateDir(), "join.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRecord(l, "join"); err == nil || !strings.Contains(err.Error(), "selfkube reset") {
		t.Errorf("damaged record: %v", err)
	}
}
