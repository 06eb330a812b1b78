package kubeconfig

import (
	"bytes"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

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
		{in: "https://admin@cp.example:6443", wantErr: "only a host and port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeServer(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NormalizeServer(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeServer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

var testCA = []byte("-----BEGIN CERTIFICATE-----\nnot parsed by these builders\n-----END CERTIFICATE-----\n")

// load parses a kubeconfig the way clients do.
func load(t *testing.T, data []byte) *clientcmdapi.Config {
	t.Helper()
	kc, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("the kubeconfig does not load: %v\n%s", err, data)
	}
	return kc
}

func TestClusterOnly(t *testing.T) {
	data, err := ClusterOnly("10.0.0.1:6443", testCA)
	if err != nil {
		t.Fatal(err)
	}
	kc := load(t, data)
	if len(kc.Clusters) != 1 || len(kc.AuthInfos) != 0 || len(kc.Contexts) != 0 || kc.CurrentContext != "" {
		t.Fatalf("want one cluster and nothing else, got %+v", kc)
	}
	c := kc.Clusters[""]
	if c == nil || c.Server != "https://10.0.0.1:6443" || !bytes.Equal(c.CertificateAuthorityData, testCA) {
		t.Fatalf("cluster %q = %+v", "", c)
	}
	// Deterministic, whichever way the server is spelled: cluster-info must not change
	// (and be signed again) on a re-apply.
	again, err := ClusterOnly("https://10.0.0.1:6443/", testCA)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("a second build differs (%v):\n%s\nvs\n%s", err, again, data)
	}
}

func TestForToken(t *testing.T) {
	data, err := ForToken("127.0.0.1:6444", testCA, "abcdef.0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	kc := load(t, data)
	ctx := kc.Contexts[kc.CurrentContext]
	if kc.CurrentContext != "tls-bootstrap" || ctx == nil || ctx.Cluster != "kubernetes" || ctx.AuthInfo != "tls-bootstrap-token-user" {
		t.Fatalf("current context %q = %+v", kc.CurrentContext, ctx)
	}
	if len(kc.Clusters) != 1 || len(kc.AuthInfos) != 1 || len(kc.Contexts) != 1 {
		t.Fatalf("want one cluster, user and context, got %+v", kc)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6444" || cfg.BearerToken != "abcdef.0123456789abcdef" || !bytes.Equal(cfg.CAData, testCA) ||
		cfg.CertData != nil || cfg.KeyData != nil {
		t.Fatalf("client configuration = host %s token %q CA %q, cert %q", cfg.Host, cfg.BearerToken, cfg.CAData, cfg.CertData)
	}
}

func TestForServiceAccount(t *testing.T) {
	const dir = "/var/run/secrets/kubernetes.io/serviceaccount"
	data, err := ForServiceAccount("https://127.0.0.1:6445", dir+"/ca.crt", dir+"/token")
	if err != nil {
		t.Fatal(err)
	}
	kc := load(t, data)
	ctx := kc.Contexts[kc.CurrentContext]
	if kc.CurrentContext != "default" || ctx == nil || ctx.Namespace != "default" {
		t.Fatalf("current context %q = %+v", kc.CurrentContext, ctx)
	}
	c, u := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if c == nil || c.Server != "https://127.0.0.1:6445" || c.CertificateAuthority != dir+"/ca.crt" || len(c.CertificateAuthorityData) != 0 {
		t.Fatalf("cluster = %+v", c)
	}
	if u == nil || u.TokenFile != dir+"/token" || u.Token != "" {
		t.Fatalf("user = %+v", u)
	}
}

func TestShapesRefuse(t *testing.T) {
	for name, build := range map[string]func() ([]byte, error){
		"cluster-only over http":    func() ([]byte, error) { return ClusterOnly("http://10.0.0.1:6443", testCA) },
		"token over http":           func() ([]byte, error) { return ForToken("http://10.0.0.1:6443", testCA, "t") },
		"token without a token":     func() ([]byte, error) { return ForToken("10.0.0.1:6443", testCA, "") },
		"service account with path": func() ([]byte, error) { return ForServiceAccount("https://10.0.0.1:6443/api", "/ca", "/token") },
		"service account no files":  func() ([]byte, error) { return ForServiceAccount("10.0.0.1:6443", "", "/token") },
	} {
		t.Run(name, func(t *testing.T) {
			if data, err := build(); err == nil {
				t.Fatalf("no error; made:\n%s", data)
			}
		})
	}
}
