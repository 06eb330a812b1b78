package render

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/test/apiserver"
)

var testHost = config.Host{Hostname: "node1", DefaultAddress: "192.0.2.99"}

// load reads a configuration the way `selfkube render --config` does.
func load(t testing.TB, yaml string) *config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(f, testHost)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const minimal = `apiVersion: selfkube.io/v1alpha1
kind: ClusterConfiguration
controlPlaneEndpoint: 192.0.2.10:6443
`

// snapshot maps every file below dir to its mode and content hash.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%v %x", st.Mode().Perm(), sha256.Sum256(data))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func TestMinimalConfigRendersCompleteAssetDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := Render(dir, load(t, minimal), Options{}); err != nil {
		t.Fatal(err)
	}
	files := snapshot(t, dir)
	for _, want := range []string{
		"tls/ca.crt", "tls/ca.key", "tls/apiserver.crt", "tls/apiserver-kubelet-client.key", "tls/front-proxy-ca.crt",
		"tls/front-proxy-client.crt", "tls/sa.key", "tls/sa.pub", "tls/apiserver-etcd-client.crt",
		"tls/etcd/ca.crt", "tls/etcd/server.crt", "tls/etcd/peer.crt", "tls/etcd/healthcheck-client.crt",
		"auth/admin.conf", "auth/super-admin.conf", "auth/controller-manager.conf", "auth/scheduler.conf", "auth/kubelet.conf",
		"bootstrap-manifests/etcd.yaml", "bootstrap-manifests/kube-apiserver.yaml",
		"bootstrap-manifests/kube-controller-manager.yaml", "bootstrap-manifests/kube-scheduler.yaml",
	} {
		if _, ok := files[want]; !ok {
			t.Errorf("missing %s", want)
		}
	}
	kinds := map[string]bool{}
	for f, modeHash := range files {
		mode := strings.Fields(modeHash)[0]
		private := strings.HasSuffix(f, ".key") || strings.HasPrefix(f, "auth/") || strings.HasSuffix(f, "-secret.yaml")
		if private && mode != "-rw-------" {
			t.Errorf("%s holds secrets but has mode %s", f, mode)
		}
		if strings.HasPrefix(f, "manifests/") {
			kinds[f[strings.LastIndex(f, "-")+1:]] = true
		}
	}
	for _, k := range []string{"daemonset.yaml", "deployment.yaml", "secret.yaml", "configmap.yaml", "service.yaml",
		"clusterrolebinding.yaml", "poddisruptionbudget.yaml", "serviceaccount.yaml"} {
		if !kinds[k] {
			t.Errorf("no %s rendered into manifests/", k)
		}
	}
}

func TestRenderAgainKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	cfg := load(t, minimal)
	if _, err := Render(dir, cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	res, err := Render(dir, cfg, Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, snapshot(t, dir)); d != "" {
		t.Errorf("a second render changed files (-before +after):\n%s", d)
	}
	for _, c := range res.Changes {
		if c.Action != "using existing" {
			t.Errorf("second render: %s %s, want using existing", c.Action, c.Path)
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "assets")
	res, err := Render(dir, load(t, minimal), Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dry run created %s (%v)", dir, err)
	}
	if len(res.Changes) < 40 {
		t.Errorf("dry run planned only %d files", len(res.Changes))
	}
}

func TestChangedSANIsReportedNotReplaced(t *testing.T) {
	dir := t.TempDir()
	if _, err := Render(dir, load(t, minimal), Options{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	_, err := Render(dir, load(t, minimal+"apiServer:\n  certSANs: [api.example.com]\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "apiserver.crt") || !strings.Contains(err.Error(), "api.example.com") {
		t.Fatalf("want an error naming apiserver.crt and the SAN, got %v", err)
	}
	if d := cmp.Diff(before, snapshot(t, dir)); d != "" {
		t.Errorf("a refused render changed files:\n%s", d)
	}
}

func TestStaleManifestRemoved(t *testing.T) {
	dir := t.TempDir()
	if _, err := Render(dir, load(t, minimal), Options{}); err != nil {
		t.Fatal(err)
	}
	external := minimal + `etcd:
  external:
    endpoints: [https://192.0.2.40:2379]
    caFile: /etc/etcd/ca.crt
    certFile: /etc/etcd/client.crt
    keyFile: /etc/etcd/client.key
`
	res, err := Render(dir, load(t, external), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bootstrap-manifests/etcd.yaml")); !os.IsNotExist(err) {
		t.Errorf("etcd.yaml survived a switch to external etcd")
	}
	found := false
	for _, c := range res.Changes {
		found = found || c == Change{Path: "bootstrap-manifests/etcd.yaml", Action: "removed stale"}
	}
	if !found {
		t.Errorf("the removal was not reported: %v", res.Changes)
	}
}

// TestRenderedManifestsApplyToRealAPIServer server-side applies, with dry-run, every
// object render produces against a real kube-apiserver: what the API would refuse
// (a wrong field, a bad value, a missing required field) fails here, not on a node.
func TestRenderedManifestsApplyToRealAPIServer(t *testing.T) {
	srv := apiserver.Start(t)
	// Without a controller-manager nobody makes kube-system's default ServiceAccount,
	// which the static pods (as mirror pods) are admitted against.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "kube-system"}}
	if _, err := srv.Client.CoreV1().ServiceAccounts("kube-system").Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, yaml := range map[string]string{
		"defaults":      minimal,
		"external-etcd": minimal + "etcd:\n  external:\n    endpoints: [https://192.0.2.40:2379]\n    caFile: /a\n    certFile: /b\n    keyFile: /c\n",
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Render(t.TempDir(), load(t, yaml), Options{})
			if err != nil {
				t.Fatal(err)
			}
			assets := append(res.Bootstrap, res.SelfHosted...)
			if len(assets) < 20 {
				t.Fatalf("only %d objects rendered", len(assets))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, a := range assets {
				if err := srv.ApplyDryRun(ctx, a.Object); err != nil {
					t.Errorf("%s: %v", a.Path, err)
				}
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	for _, alg := range []string{config.KeyAlgorithmECDSAP256, config.KeyAlgorithmRSA2048} {
		b.Run(alg, func(b *testing.B) {
			cfg := load(b, minimal+"certificates:\n  keyAlgorithm: "+alg+"\n")
			for i := 0; i < b.N; i++ {
				if _, err := Render(b.TempDir(), cfg, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
