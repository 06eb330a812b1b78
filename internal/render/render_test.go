package render

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/pki"
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
		"tls/encryption-config.yaml", "tls/audit-policy.yaml",
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
		private := strings.HasSuffix(f, ".key") || strings.HasPrefix(f, "auth/") || strings.HasSuffix(f, "-secret.yaml") ||
			f == "tls/encryption-config.yaml"
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

func TestPassRunsEachStepOnceInOrder(t *testing.T) {
	dir := t.TempDir()
	p := NewPass(dir, load(t, minimal), Options{})
	count := func(res *Result, prefix string) int {
		n := 0
		for _, c := range res.Changes {
			if strings.HasPrefix(c.Path, prefix) {
				n++
			}
		}
		return n
	}
	res, err := p.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	certs := count(res, "tls/")
	if certs == 0 || count(res, "auth/") != 0 || len(res.Bootstrap) != 0 {
		t.Fatalf("after Certificates: %d tls changes, %d auth changes, %d static pods", certs, count(res, "auth/"), len(res.Bootstrap))
	}
	if _, err := p.Certificates(); err != nil {
		t.Fatal(err)
	}
	// Manifests runs the step not yet done (kubeconfigs) first, and not Certificates again.
	res, err = p.Manifests()
	if err != nil {
		t.Fatal(err)
	}
	if count(res, "auth/") == 0 || len(res.Bootstrap) == 0 || len(res.SelfHosted) == 0 {
		t.Fatalf("after Manifests: %d auth changes, %d static pods, %d self-hosted objects", count(res, "auth/"), len(res.Bootstrap), len(res.SelfHosted))
	}
	// The audit policy is written by the manifests step into tls/; the certificates are
	// there once each.
	if got := count(res, "tls/") - count(res, "tls/audit-policy.yaml"); got != certs {
		t.Errorf("%d certificate changes after the whole pass, %d after its first step: a step ran twice", got, certs)
	}
	again, err := p.Manifests()
	if err != nil || len(again.Changes) != len(res.Changes) {
		t.Errorf("a second Manifests changed the result: %d changes, then %d (%v)", len(res.Changes), len(again.Changes), err)
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

// apiServerSecret returns the kube-apiserver Secret and DaemonSet command of a render.
func apiServerSecret(t *testing.T, res *Result) (*corev1.Secret, []string) {
	t.Helper()
	var secret *corev1.Secret
	var cmd []string
	for _, a := range res.SelfHosted {
		switch o := a.Object.(type) {
		case *corev1.Secret:
			if o.Name == manifests.APIServerSecret {
				secret = o
			}
		case *appsv1.DaemonSet:
			if o.Name == manifests.APIServerSecret {
				cmd = o.Spec.Template.Spec.Containers[0].Command
			}
		}
	}
	if secret == nil || cmd == nil {
		t.Fatalf("no kube-apiserver Secret (%v) or DaemonSet (%v) rendered", secret, cmd)
	}
	return secret, cmd
}

func TestEncryptionConfigKeptAcrossRenders(t *testing.T) {
	dir := t.TempDir()
	res, err := Render(dir, load(t, minimal), Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(manifests.FileEncryptionConfig))
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("render wrote no encryption configuration: %v", err)
	}
	if filepath.Base(path) != pki.EncryptionConfigFile {
		t.Errorf("manifests.FileEncryptionConfig %s is not pki's %s", manifests.FileEncryptionConfig, pki.EncryptionConfigFile)
	}
	if _, err := pki.ParseEncryptionConfig(first); err != nil {
		t.Errorf("the rendered encryption configuration does not parse: %v", err)
	}
	secret, cmd := apiServerSecret(t, res)
	if string(secret.Data["encryption-config.yaml"]) != string(first) {
		t.Errorf("the apiserver Secret does not carry the asset's encryption configuration")
	}
	if !slices.Contains(cmd, "--encryption-provider-config="+manifests.SecretsMountDir+"/encryption-config.yaml") {
		t.Errorf("the apiserver is not given the encryption configuration: %v", cmd)
	}

	// Re-rendered, also when other keys are regenerated, the key stays.
	for _, f := range []string{"tls/apiserver.crt", "tls/apiserver.key"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	res, err = Render(dir, load(t, minimal), Options{})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(path)
	if string(first) != string(again) {
		t.Errorf("a second render replaced the encryption key")
	}
	for _, c := range res.Changes {
		if c.Path == manifests.FileEncryptionConfig && c.Action != "using existing" {
			t.Errorf("second render: %s %s, want using existing", c.Action, c.Path)
		}
	}

	// Turned off: no flag, no Secret key, and the key is kept for turning it on again.
	res, err = Render(dir, load(t, minimal+"apiServer:\n  encryptionAtRest: false\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret, cmd = apiServerSecret(t, res)
	if _, ok := secret.Data["encryption-config.yaml"]; ok || slices.ContainsFunc(cmd, func(a string) bool {
		return strings.HasPrefix(a, "--encryption-provider-config")
	}) {
		t.Errorf("encryption at rest off, yet the apiserver gets it: %v", cmd)
	}
	if kept, _ := os.ReadFile(path); string(kept) != string(first) {
		t.Errorf("turning encryption off changed the key file")
	}
}

func TestAuditPolicyFollowsTheConfiguration(t *testing.T) {
	dir := t.TempDir()
	cfg := load(t, minimal)
	res, err := Render(dir, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(manifests.FileAuditPolicy))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("render wrote no audit policy: %v", err)
	}
	var back config.AuditPolicy
	if err := sigsyaml.UnmarshalStrict(data, &back); err != nil {
		t.Fatalf("the audit policy file does not decode strictly: %v\n%s", err, data)
	}
	if d := cmp.Diff(config.DefaultAuditPolicy(), &back); d != "" {
		t.Errorf("the audit policy file is not the default policy (-want +got):\n%s", d)
	}
	secret, cmd := apiServerSecret(t, res)
	if string(secret.Data["audit-policy.yaml"]) != string(data) {
		t.Errorf("the apiserver Secret does not carry the audit policy")
	}
	for _, want := range []string{
		"--audit-policy-file=" + manifests.SecretsMountDir + "/audit-policy.yaml",
		"--audit-log-path=/var/log/kubernetes/audit/audit.log",
		"--audit-log-maxage=7", "--audit-log-maxbackup=10", "--audit-log-maxsize=100",
	} {
		if !slices.Contains(cmd, want) {
			t.Errorf("the apiserver lacks %s: %v", want, cmd)
		}
	}

	// A changed policy is written again; audit off removes it.
	res, err = Render(dir, load(t, minimal+"apiServer:\n  audit:\n    policy:\n      rules: [{level: None}]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "level: None") || strings.Contains(string(data), "Metadata") {
		t.Errorf("the audit policy was not rewritten from the configuration:\n%s", data)
	}
	res, err = Render(dir, load(t, minimal+"apiServer:\n  audit:\n    enabled: false\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("audit off, yet %s stays (%v)", path, err)
	}
	secret, cmd = apiServerSecret(t, res)
	if _, ok := secret.Data["audit-policy.yaml"]; ok || slices.ContainsFunc(cmd, func(a string) bool {
		return strings.HasPrefix(a, "--audit-")
	}) {
		t.Errorf("audit off, yet the apiserver gets it: %v", cmd)
	}
}

func TestKeyDirectoriesArePrivate(t *testing.T) {
	dir := t.TempDir()
	// An operator made the folders beforehand, world-readable.
	for _, d := range []string{"tls/etcd", "auth"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Render(dir, load(t, minimal), Options{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tls", "tls/etcd", "auth"} {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (%v), want 0700", d, st.Mode().Perm(), err)
		}
	}
}

// TestRenderedManifestsApplyToRealAPIServer applies every object render produces to a real
// kube-apiserver with init's applier (internal/apply), in the order init applies them:
// what the API would refuse (a wrong field, a bad value, a missing required field) fails
// here, not on a node. The bootstrap pods are applied too, as the mirror pods of the
// static pods the kubelet reports. Each configuration gets its own server, as a cluster
// would (pods are immutable, so two configurations cannot share one).
func TestRenderedManifestsApplyToRealAPIServer(t *testing.T) {
	for name, yaml := range map[string]string{
		"defaults":      minimal,
		"external-etcd": minimal + "etcd:\n  external:\n    endpoints: [https://192.0.2.40:2379]\n    caFile: /a\n    certFile: /b\n    keyFile: /c\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res, err := Render(t.TempDir(), load(t, yaml), Options{})
			if err != nil {
				t.Fatal(err)
			}
			assets := append(res.Bootstrap, res.SelfHosted...)
			if len(assets) < 20 {
				t.Fatalf("only %d objects rendered", len(assets))
			}
			srv := apiserver.Start(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// Without a controller-manager nobody makes kube-system's default
			// ServiceAccount, which the static pods (as mirror pods) are admitted against.
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "kube-system"}}
			if _, err := srv.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			applier, err := apply.New(srv.Config)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range assets {
				if err := applier.Object(ctx, a.Object); err != nil {
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
