package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/cert"
)

// newCA returns a fresh self-signed CA certificate and its PEM.
func newCA(t *testing.T) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cert.NewSelfSignedCACert(cert.Config{CommonName: "kubernetes"}, key)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cert.EncodeCertificates(ca)
	if err != nil {
		t.Fatal(err)
	}
	return ca, pemBytes
}

func TestNormalizeServer(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "10.0.0.1:6443", want: "https://10.0.0.1:6443"},
		{in: "https://cp.example:6443", want: "https://cp.example:6443"},
		{in: "https://cp.example:6443/", want: "https://cp.example:6443"},
		{in: "cp.example", want: "https://cp.example:443"},
		{in: "[fd00::1]:6443", want: "https://[fd00::1]:6443"},
		{in: "http://cp.example:6443", wantErr: "must use https"},
		{in: "", wantErr: "has no host"},
		{in: "https://cp.example:6443/api", wantErr: "only a host and port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeServer(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NormalizeServer(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeServer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestBuildClusterInfo(t *testing.T) {
	_, caPEM := newCA(t)
	info, err := BuildClusterInfo("10.0.0.1:6443", caPEM)
	if err != nil {
		t.Fatalf("BuildClusterInfo: %v", err)
	}
	cm := info.ConfigMap
	if cm.Namespace != "kube-public" || cm.Name != "cluster-info" || len(cm.Data) != 1 {
		t.Fatalf("ConfigMap = %s/%s with keys %v", cm.Namespace, cm.Name, cm.Data)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		t.Fatalf("kubeconfig does not load: %v", err)
	}
	if len(cfg.Clusters) != 1 || len(cfg.AuthInfos) != 0 || len(cfg.Contexts) != 0 || cfg.CurrentContext != "" {
		t.Fatalf("kubeconfig holds more than one cluster: %+v", cfg)
	}
	c := cfg.Clusters[""]
	if c == nil || c.Server != "https://10.0.0.1:6443" || string(c.CertificateAuthorityData) != string(caPEM) {
		t.Fatalf("kubeconfig cluster = %+v", c)
	}

	// Deterministic: the bootstrapsigner must not see a change on a re-apply.
	again, err := BuildClusterInfo("https://10.0.0.1:6443", caPEM)
	if err != nil || again.ConfigMap.Data["kubeconfig"] != cm.Data["kubeconfig"] {
		t.Fatalf("a second build differs (%v)", err)
	}

	wantRole := []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"cluster-info"}}}
	if info.Role.Namespace != "kube-public" || info.Role.Name != "kubeadm:bootstrap-signer-clusterinfo" {
		t.Fatalf("Role = %s/%s", info.Role.Namespace, info.Role.Name)
	}
	if diff := cmp.Diff(wantRole, info.Role.Rules); diff != "" {
		t.Fatalf("Role rules (-want +got):\n%s", diff)
	}
	b := info.RoleBinding
	if b.Namespace != "kube-public" || b.Name != "kubeadm:bootstrap-signer-clusterinfo" ||
		b.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kubeadm:bootstrap-signer-clusterinfo"}) ||
		len(b.Subjects) != 1 || b.Subjects[0] != (rbacv1.Subject{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "system:anonymous"}) {
		t.Fatalf("RoleBinding = %+v", b)
	}
}

func TestBuildClusterInfoErrors(t *testing.T) {
	_, caPEM := newCA(t)
	if _, err := BuildClusterInfo("http://10.0.0.1:6443", caPEM); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("http server: error = %v", err)
	}
	if _, err := BuildClusterInfo("10.0.0.1:6443", []byte("not a certificate")); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("bad CA: error = %v", err)
	}
}

func TestEnsureClusterInfo(t *testing.T) {
	ctx := context.Background()
	_, caPEM := newCA(t)
	client := fake.NewClientset()
	if err := EnsureClusterInfo(ctx, client, "10.0.0.1:6443", caPEM); err != nil {
		t.Fatalf("EnsureClusterInfo: %v", err)
	}
	cm, err := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting cluster-info: %v", err)
	}
	want, _ := BuildClusterInfo("10.0.0.1:6443", caPEM)
	if diff := cmp.Diff(want.ConfigMap.Data, cm.Data); diff != "" {
		t.Fatalf("cluster-info data (-want +got):\n%s", diff)
	}
	role, err := client.RbacV1().Roles("kube-public").Get(ctx, ClusterInfoRBACName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting the Role: %v", err)
	}
	if diff := cmp.Diff(want.Role.Rules, role.Rules); diff != "" {
		t.Fatalf("Role rules (-want +got):\n%s", diff)
	}
	binding, err := client.RbacV1().RoleBindings("kube-public").Get(ctx, ClusterInfoRBACName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting the RoleBinding: %v", err)
	}
	if diff := cmp.Diff(want.RoleBinding.Subjects, binding.Subjects); diff != "" {
		t.Fatalf("RoleBinding subjects (-want +got):\n%s", diff)
	}

	// The bootstrapsigner adds a signature; a second Ensure keeps it and changes nothing.
	cm.Data["jws-kubeconfig-abcdef"] = "eyJ..sig"
	if _, err := client.CoreV1().ConfigMaps("kube-public").Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kube-controller-manager"}); err != nil {
		t.Fatalf("adding a signature: %v", err)
	}
	before, _ := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err := EnsureClusterInfo(ctx, client, "https://10.0.0.1:6443", caPEM); err != nil {
		t.Fatalf("second EnsureClusterInfo: %v", err)
	}
	after, _ := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if diff := cmp.Diff(before.Data, after.Data); diff != "" {
		t.Fatalf("second EnsureClusterInfo changed cluster-info (-before +after):\n%s", diff)
	}
	if after.Data["jws-kubeconfig-abcdef"] != "eyJ..sig" {
		t.Fatalf("second EnsureClusterInfo dropped the signature: %v", after.Data)
	}
}

func TestEnsureClusterInfoAPIError(t *testing.T) {
	_, caPEM := newCA(t)
	client := fake.NewClientset()
	client.PrependReactor("patch", "roles", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	err := EnsureClusterInfo(context.Background(), client, "10.0.0.1:6443", caPEM)
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "applying Role kube-public/kubeadm:bootstrap-signer-clusterinfo") {
		t.Fatalf("EnsureClusterInfo error = %v, want the Role failure wrapped", err)
	}
}

func TestJoinCommand(t *testing.T) {
	ca, caPEM := newCA(t)
	// The pin computed independently: SHA-256 over the DER SubjectPublicKeyInfo.
	spki, err := x509.MarshalPKIXPublicKey(ca.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	if got := CAHash(ca); got != hash {
		t.Fatalf("CAHash = %s, want %s", got, hash)
	}

	got, err := JoinCommand("https://10.0.0.1:6443", testToken, caPEM)
	if err != nil {
		t.Fatalf("JoinCommand: %v", err)
	}
	want := "selfkube join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash " + hash
	if got != want {
		t.Fatalf("JoinCommand =\n%s\nwant\n%s", got, want)
	}

	// A bundle (CA rotation) pins every CA.
	other, otherPEM := newCA(t)
	got, err = JoinCommand("10.0.0.1:6443", testToken, append(append([]byte{}, caPEM...), otherPEM...))
	if err != nil {
		t.Fatalf("JoinCommand with a bundle: %v", err)
	}
	if want2 := want + " --discovery-token-ca-cert-hash " + CAHash(other); got != want2 {
		t.Fatalf("JoinCommand with a bundle =\n%s\nwant\n%s", got, want2)
	}
}

func TestJoinCommandErrors(t *testing.T) {
	_, caPEM := newCA(t)
	if _, err := JoinCommand("10.0.0.1:6443", Token{ID: "abcdef"}, caPEM); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("bad token: error = %v", err)
	}
	if _, err := JoinCommand("10.0.0.1:6443", testToken, nil); err == nil {
		t.Fatal("no CA: no error")
	}
	if _, err := JoinCommand("http://10.0.0.1:6443", testToken, caPEM); err == nil {
		t.Fatal("http endpoint: no error")
	}
}
