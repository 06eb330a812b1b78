package initcluster

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
)

// testData is an init run below a temporary root, far enough for the phases that only
// write files.
func testData(t *testing.T) *Data {
	t.Helper()
	cfg := &config.Config{}
	config.Default(cfg, config.Host{Hostname: "node1", DefaultAddress: "192.0.2.10"})
	if errs := config.Validate(cfg); len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	l := host.Layout{Root: t.TempDir()}
	rec, err := LoadRecord(l)
	if err != nil {
		t.Fatal(err)
	}
	return &Data{Options: Options{Layout: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, Cfg: cfg, Record: rec}
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestFilePhasesMakePrivateDirectories runs the certs, etcd and control-plane phases
// against directories that exist with the kubelet's 0755 (the mode depended on which
// file was written first before): each must end 0700, and the encryption configuration
// 0600 in the temporary control plane's copy.
func TestFilePhasesMakePrivateDirectories(t *testing.T) {
	d := testData(t)
	l := d.Layout
	dataDir := l.HostPath(d.Cfg.Cluster.Etcd.Local.DataDir)
	auditDir := l.HostPath(d.Cfg.Cluster.APIServer.Audit.LogDir)
	loose := []string{dataDir, filepath.Join(l.PKIDir(), "etcd"), filepath.Join(l.BootstrapSecretsDir(), "tls", "etcd"),
		filepath.Join(l.BootstrapSecretsDir(), "auth"), auditDir}
	for _, dir := range loose {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, phase := range []func(context.Context, *Data) error{certs, kubeconfigs, etcdStaticPod, temporaryControlPlane} {
		if err := phase(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range append(loose, l.BootstrapSecretsDir(), filepath.Join(l.BootstrapSecretsDir(), "tls"),
		filepath.Join(d.AssetDir(), "tls"), filepath.Join(d.AssetDir(), "tls", "etcd"), filepath.Join(d.AssetDir(), "auth")) {
		if m := mode(t, dir); m != 0o700 {
			t.Errorf("%s has mode %v, want 0700", dir, m)
		}
	}
	for file, want := range map[string]fs.FileMode{
		filepath.Join(d.AssetDir(), "tls", "encryption-config.yaml"):            0o600,
		filepath.Join(l.BootstrapSecretsDir(), "tls", "encryption-config.yaml"): 0o600,
		filepath.Join(l.BootstrapSecretsDir(), "tls", "audit-policy.yaml"):      0o600,
		filepath.Join(l.BootstrapSecretsDir(), "tls", "ca.key"):                 0o600,
		filepath.Join(l.BootstrapSecretsDir(), "tls", "ca.crt"):                 0o644,
		filepath.Join(l.PKIDir(), "etcd", "server.key"):                         0o600,
		filepath.Join(l.ManifestsDir(), "etcd.yaml"):                            0o600,
		filepath.Join(l.ManifestsDir(), "kube-apiserver.yaml"):                  0o600,
	} {
		if m := mode(t, file); m != want {
			t.Errorf("%s has mode %v, want %v", file, m, want)
		}
	}
	// A re-run (init resumes) keeps the key.
	key, _ := os.ReadFile(filepath.Join(d.AssetDir(), "tls", "encryption-config.yaml"))
	if err := certs(ctx, d); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(d.AssetDir(), "tls", "encryption-config.yaml")); string(again) != string(key) {
		t.Error("a second certs phase replaced the encryption key")
	}
}
