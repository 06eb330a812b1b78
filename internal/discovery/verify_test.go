package discovery

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/pki/pkitest"
)

var testToken = bootstrap.Token{ID: "abcdef", Secret: "0123456789abcdef"}

// pin is the CA pin computed here independently of the code under test.
func pin(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// clusterInfoKubeconfig renders a cluster-info kubeconfig, malformed ones too, for server and caPEM.
func clusterInfoKubeconfig(t *testing.T, server string, caPEM []byte) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// signed returns cluster-info holding kubeconfig, signed with each of tokens as the
// bootstrapsigner does.
func signed(t *testing.T, kubeconfig string, tokens ...bootstrap.Token) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"},
		Data:       map[string]string{"kubeconfig": kubeconfig},
	}
	for _, tok := range tokens {
		sig, err := jws.ComputeDetachedSignature(kubeconfig, tok.ID, tok.Secret)
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["jws-kubeconfig-"+tok.ID] = sig
	}
	return cm
}

func TestVerify(t *testing.T) {
	ca, caPEM := pkitest.NewCA(t)
	other, otherPEM := pkitest.NewCA(t)
	good := clusterInfoKubeconfig(t, "https://10.0.0.1:6443", caPEM)
	goodPin := pin(t, ca)
	otherToken := bootstrap.Token{ID: "zzzzzz", Secret: "zzzzzzzzzzzzzzzz"}

	tests := []struct {
		name    string
		cm      *corev1.ConfigMap
		token   bootstrap.Token
		pins    []string
		opts    Options
		wantErr error
		// wantText are substrings the error must contain.
		wantText []string
	}{
		{name: "valid", cm: signed(t, good, otherToken, testToken), token: testToken, pins: []string{goodPin}},
		{name: "valid, pin in upper case", cm: signed(t, good, testToken), token: testToken, pins: []string{strings.ToUpper(goodPin)}},
		{name: "valid, one of several pins", cm: signed(t, good, testToken), token: testToken, pins: []string{pin(t, other), goodPin}},
		{
			name:  "valid, CA bundle with the pinned CA second",
			cm:    signed(t, clusterInfoKubeconfig(t, "https://10.0.0.1:6443", append(append([]byte{}, otherPEM...), caPEM...)), testToken),
			token: testToken, pins: []string{goodPin},
		},
		{name: "valid, unsafe skip without pins", cm: signed(t, good, testToken), token: testToken, opts: Options{UnsafeSkipCAVerification: true}},
		{
			name: "no signature for this token", cm: signed(t, good, otherToken), token: testToken, pins: []string{goodPin},
			wantErr: ErrNoSignature, wantText: []string{"jws-kubeconfig-abcdef", "create a new token"},
		},
		{
			name: "unsigned", cm: signed(t, good), token: testToken, pins: []string{goodPin},
			wantErr: ErrNoSignature, wantText: []string{"not signed it yet"},
		},
		{
			name: "wrong secret", cm: signed(t, good, testToken), token: bootstrap.Token{ID: testToken.ID, Secret: "ffffffffffffffff"}, pins: []string{goodPin},
			wantErr: ErrSignatureMismatch, wantText: []string{"secret is wrong", "tampered"},
		},
		{
			name: "tampered kubeconfig",
			cm: func() *corev1.ConfigMap {
				cm := signed(t, good, testToken)
				cm.Data["kubeconfig"] = clusterInfoKubeconfig(t, "https://10.6.6.6:6443", otherPEM)
				return cm
			}(),
			token: testToken, pins: []string{pin(t, other)},
			wantErr: ErrSignatureMismatch,
		},
		{
			name: "signature of another token copied under this ID",
			cm: func() *corev1.ConfigMap {
				cm := signed(t, good, otherToken)
				cm.Data["jws-kubeconfig-abcdef"] = cm.Data["jws-kubeconfig-zzzzzz"]
				return cm
			}(),
			token: testToken, pins: []string{goodPin},
			wantErr: ErrSignatureMismatch,
		},
		{
			name: "CA does not match the pin", cm: signed(t, good, testToken), token: testToken, pins: []string{pin(t, other)},
			wantErr: ErrCAHashMismatch, wantText: []string{"public key hash " + goodPin, "the pins are " + pin(t, other)},
		},
		{name: "pin without type", cm: signed(t, good, testToken), token: testToken, pins: []string{strings.TrimPrefix(goodPin, "sha256:")}, wantErr: ErrMalformedPin, wantText: []string{"no hash type"}},
		{name: "pin of another type", cm: signed(t, good, testToken), token: testToken, pins: []string{"md5:" + strings.TrimPrefix(goodPin, "sha256:")}, wantErr: ErrMalformedPin, wantText: []string{"only sha256"}},
		{name: "pin too short", cm: signed(t, good, testToken), token: testToken, pins: []string{goodPin[:len(goodPin)-2]}, wantErr: ErrMalformedPin, wantText: []string{"64 hexadecimal"}},
		{name: "pin not hex", cm: signed(t, good, testToken), token: testToken, pins: []string{goodPin[:len(goodPin)-1] + "g"}, wantErr: ErrMalformedPin},
		{name: "a bad pin among good ones", cm: signed(t, good, testToken), token: testToken, pins: []string{goodPin, "sha256:"}, wantErr: ErrMalformedPin},
		{name: "no pins", cm: signed(t, good, testToken), token: testToken, wantErr: ErrNoPins, wantText: []string{"--discovery-token-ca-cert-hash"}},
		{name: "no kubeconfig key", cm: &corev1.ConfigMap{Data: map[string]string{}}, token: testToken, pins: []string{goodPin}, wantErr: ErrMalformedKubeconfig},
		{name: "kubeconfig not YAML", cm: signed(t, "{{{", testToken), token: testToken, pins: []string{goodPin}, wantErr: ErrMalformedKubeconfig},
		{name: "kubeconfig without CA", cm: signed(t, clusterInfoKubeconfig(t, "https://10.0.0.1:6443", nil), testToken), token: testToken, pins: []string{goodPin}, wantErr: ErrMalformedKubeconfig, wantText: []string{"no certificate-authority-data"}},
		{name: "kubeconfig with a bad CA", cm: signed(t, clusterInfoKubeconfig(t, "https://10.0.0.1:6443", []byte("junk")), testToken), token: testToken, pins: []string{goodPin}, wantErr: ErrMalformedKubeconfig},
		{name: "kubeconfig with an http server", cm: signed(t, clusterInfoKubeconfig(t, "http://10.0.0.1:6443", caPEM), testToken), token: testToken, pins: []string{goodPin}, wantErr: ErrMalformedKubeconfig, wantText: []string{"not an https URL"}},
		{
			name: "kubeconfig with two clusters and no context",
			cm: func() *corev1.ConfigMap {
				cfg := clientcmdapi.NewConfig()
				cfg.Clusters["a"] = &clientcmdapi.Cluster{Server: "https://a:6443", CertificateAuthorityData: caPEM}
				cfg.Clusters["b"] = &clientcmdapi.Cluster{Server: "https://b:6443", CertificateAuthorityData: caPEM}
				out, _ := clientcmd.Write(*cfg)
				return signed(t, string(out), testToken)
			}(),
			token: testToken, pins: []string{goodPin}, wantErr: ErrMalformedKubeconfig, wantText: []string{"2 clusters"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(tt.cm, tt.token, tt.pins, tt.opts)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got.Server != "https://10.0.0.1:6443" || len(got.CACerts) == 0 || !strings.Contains(string(got.CAData), string(caPEM)) {
					t.Fatalf("Verify = %+v", got)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want one wrapping %q", err, tt.wantErr)
			}
			for _, s := range append(tt.wantText, "") {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("Verify error = %q, want it to contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), tt.token.Secret) {
				t.Fatalf("Verify error %q echoes the token secret", err)
			}
		})
	}
}

func TestVerifyPicksCurrentContext(t *testing.T) {
	ca, caPEM := pkitest.NewCA(t)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["a"] = &clientcmdapi.Cluster{Server: "https://a:6443", CertificateAuthorityData: caPEM}
	cfg.Clusters["b"] = &clientcmdapi.Cluster{Server: "https://b:6443", CertificateAuthorityData: caPEM}
	cfg.Contexts["ctx"] = &clientcmdapi.Context{Cluster: "b"}
	cfg.CurrentContext = "ctx"
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(signed(t, string(out), testToken), testToken, []string{pin(t, ca)}, Options{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Server != "https://b:6443" {
		t.Fatalf("Verify picked %s, want https://b:6443", got.Server)
	}
}

func TestParsePins(t *testing.T) {
	h := strings.Repeat("ab", 32)
	got, err := ParsePins([]string{"SHA256:" + strings.ToUpper(h), "sha256:" + h})
	if err != nil {
		t.Fatalf("ParsePins: %v", err)
	}
	if got[0] != "sha256:"+h || got[1] != "sha256:"+h {
		t.Fatalf("ParsePins = %v", got)
	}
}
