package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/pki"
)

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func issueFor(t *testing.T, spec pki.Spec, ca *pki.KeyPair) *pki.KeyPair {
	t.Helper()
	validity := 24 * time.Hour
	if spec.Kind == pki.KindCA {
		validity = 10 * 365 * 24 * time.Hour
	}
	kp, err := pki.Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: validity, Now: start}.Issue(spec, ca)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func encodeKey(t *testing.T, kp *pki.KeyPair) []byte {
	t.Helper()
	b, err := pki.EncodeKey(kp.Key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kubeconfigFor(t *testing.T, ca, client *pki.KeyPair, token string) []byte {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://172.31.0.71:6443", CertificateAuthorityData: pki.EncodeCertificate(ca.Cert)}
	u := &clientcmdapi.AuthInfo{Token: token}
	if client != nil {
		u = &clientcmdapi.AuthInfo{ClientCertificateData: pki.EncodeCertificate(client.Cert), ClientKeyData: encodeKey(t, client)}
	}
	kc.AuthInfos["u"] = u
	kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "x"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	ca, frontProxyCA, foreignCA *pki.KeyPair
	files                       map[string][]byte
}

// newFixture is a Secret's data as the API server's and controller manager's hold it:
// the cluster CA's certificate, a serving certificate it signed, a front-proxy client of
// another CA, a certificate of a CA the cluster does not know, and two kubeconfigs.
func newFixture(t *testing.T) fixture {
	ca := issueFor(t, pki.Spec{Name: pki.CA, Kind: pki.KindCA, CommonName: "kubernetes"}, nil)
	fp := issueFor(t, pki.Spec{Name: pki.FrontProxyCA, Kind: pki.KindCA, CommonName: "front-proxy-ca"}, nil)
	foreign := issueFor(t, pki.Spec{Name: "other", Kind: pki.KindCA, CommonName: "someone else"}, nil)
	api := issueFor(t, pki.Spec{Name: pki.APIServer, Kind: pki.KindServer, CommonName: "kube-apiserver",
		DNSNames: []string{"kubernetes", "localhost"}, IPs: []net.IP{net.ParseIP("10.96.0.1")}}, ca)
	fpc := issueFor(t, pki.Spec{Name: pki.FrontProxyClient, Kind: pki.KindClient, CommonName: "front-proxy-client"}, fp)
	stray := issueFor(t, pki.Spec{Name: "stray", Kind: pki.KindClient, CommonName: "stray"}, foreign)
	kcm := issueFor(t, pki.Spec{Name: "kcm", Kind: pki.KindClient, CommonName: "system:kube-controller-manager"}, ca)
	return fixture{ca: ca, frontProxyCA: fp, foreignCA: foreign, files: map[string][]byte{
		"ca.crt":                  pki.EncodeCertificate(ca.Cert),
		"apiserver.crt":           pki.EncodeCertificate(api.Cert),
		"apiserver.key":           encodeKey(t, api),
		"front-proxy-client.crt":  pki.EncodeCertificate(fpc.Cert),
		"front-proxy-client.key":  encodeKey(t, fpc),
		"stray.crt":               pki.EncodeCertificate(stray.Cert),
		"stray.key":               encodeKey(t, stray),
		"controller-manager.conf": kubeconfigFor(t, ca, kcm, ""),
		"bootstrap.conf":          kubeconfigFor(t, ca, nil, "abcdef.0123456789abcdef"),
	}}
}

func (f fixture) renewer(t *testing.T) Renewer {
	return Renewer{
		CAs:    CAs{pki.CA: f.ca, pki.FrontProxyCA: {Cert: f.frontProxyCA.Cert}},
		Issuer: pki.Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: 48 * time.Hour, Now: start.Add(time.Hour)},
	}
}

func byName(rs []Renewal) map[string]Renewal {
	out := map[string]Renewal{}
	for _, r := range rs {
		out[r.Name] = r
	}
	return out
}

// Renewing a Secret's data renews each leaf whose CA key is at hand, keeping subject and
// names, and with a key that fits it; it skips, saying why, the leaves of a CA whose key
// is elsewhere or that the cluster does not know; it leaves CAs and token kubeconfigs
// alone, and does not change the map it was given.
func TestRenewerFiles(t *testing.T) {
	f := newFixture(t)
	before := map[string][]byte{}
	for k, v := range f.files {
		before[k] = bytes.Clone(v)
	}
	out, done, err := f.renewer(t).Files("secret kube-system/x", f.files)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range before {
		if !bytes.Equal(f.files[k], v) {
			t.Errorf("the input %s was changed", k)
		}
	}
	got := byName(done)
	if len(got) != 4 {
		t.Errorf("renewals %v, want apiserver, front-proxy-client, stray and controller-manager.conf", done)
	}

	api := got["apiserver"]
	if api.NewSerial == "" || api.Skipped != "" || api.CA != pki.CA {
		t.Fatalf("apiserver not renewed: %+v", api)
	}
	oldCert, _ := parseCert(before["apiserver.crt"])
	newCert, err := parseCert(out["apiserver.crt"])
	if err != nil {
		t.Fatal(err)
	}
	if newCert.SerialNumber.Cmp(oldCert.SerialNumber) == 0 || newCert.Subject.String() != oldCert.Subject.String() ||
		!slices.Equal(newCert.DNSNames, oldCert.DNSNames) || !newCert.IPAddresses[0].Equal(oldCert.IPAddresses[0]) {
		t.Errorf("renewed apiserver certificate differs in more than serial and validity: %v %v %v", newCert.Subject, newCert.DNSNames, newCert.IPAddresses)
	}
	if !newCert.NotAfter.After(oldCert.NotAfter.Add(24 * time.Hour)) {
		t.Errorf("renewed certificate expires %v, before the old %v", newCert.NotAfter, oldCert.NotAfter)
	}
	if err := newCert.CheckSignatureFrom(f.ca.Cert); err != nil {
		t.Errorf("renewed certificate not signed by the cluster CA: %v", err)
	}
	key, err := pki.ParseKey(out["apiserver.key"])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(out["apiserver.key"], before["apiserver.key"]) || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(newCert.PublicKey) {
		t.Errorf("the key was not replaced by the renewed certificate's")
	}

	if fp := got["front-proxy-client"]; !strings.Contains(fp.Skipped, "key of the CA front-proxy-ca is not on this node") {
		t.Errorf("front-proxy-client: %+v, want skipped for its CA's key", fp)
	}
	if !bytes.Equal(out["front-proxy-client.crt"], before["front-proxy-client.crt"]) {
		t.Errorf("a skipped certificate was changed")
	}
	if s := got["stray"]; !strings.Contains(s.Skipped, "none of the cluster's CAs") {
		t.Errorf("stray: %+v, want skipped for an unknown CA", s)
	}

	kc := got["controller-manager.conf"]
	if kc.NewSerial == "" {
		t.Fatalf("controller-manager.conf not renewed: %+v", kc)
	}
	cfg, err := clientcmd.Load(out["controller-manager.conf"])
	if err != nil {
		t.Fatal(err)
	}
	client, _ := parseCert(cfg.AuthInfos["u"].ClientCertificateData)
	if client.Subject.CommonName != "system:kube-controller-manager" || client.SerialNumber.Text(16) != kc.NewSerial ||
		cfg.Clusters["c"].Server != "https://172.31.0.71:6443" || !slices.Contains(client.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("renewed kubeconfig: CN %q, server %q", client.Subject.CommonName, cfg.Clusters["c"].Server)
	}
	if !bytes.Equal(out["ca.crt"], before["ca.crt"]) || !bytes.Equal(out["bootstrap.conf"], before["bootstrap.conf"]) {
		t.Errorf("a CA or a token kubeconfig was changed")
	}
}

func TestRenewerSelectExtraSANsAndDryRun(t *testing.T) {
	f := newFixture(t)
	r := f.renewer(t)
	sel, err := selector([]string{"controller-manager.conf"})
	if err != nil {
		t.Fatal(err)
	}
	r.Select = sel
	out, done, err := r.Files("here", f.files)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].Name != "controller-manager.conf" || !bytes.Equal(out["apiserver.crt"], f.files["apiserver.crt"]) {
		t.Errorf("selecting controller-manager.conf renewed %v", done)
	}

	r = f.renewer(t)
	r.ExtraSANs = []string{"api.example.com", "192.0.2.7"}
	out, _, err = r.Files("here", f.files)
	if err != nil {
		t.Fatal(err)
	}
	api, _ := parseCert(out["apiserver.crt"])
	if !slices.Contains(api.DNSNames, "api.example.com") || !slices.ContainsFunc(api.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("192.0.2.7")) }) {
		t.Errorf("--san not in the apiserver certificate: %v %v", api.DNSNames, api.IPAddresses)
	}
	cfg, _ := clientcmd.Load(out["controller-manager.conf"])
	client, _ := parseCert(cfg.AuthInfos["u"].ClientCertificateData)
	if slices.Contains(client.DNSNames, "api.example.com") {
		t.Errorf("--san went into a client certificate")
	}

	r = f.renewer(t)
	r.DryRun = true
	out, done, err = r.Files("here", f.files)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range f.files {
		if !bytes.Equal(out[k], v) {
			t.Errorf("dry run changed %s", k)
		}
	}
	if got := byName(done)["apiserver"]; got.NewSerial != "" || got.Skipped != "" {
		t.Errorf("dry run: apiserver %+v, want listed as to be renewed", got)
	}
}

func TestSelectorRefusesUnknownNames(t *testing.T) {
	if _, err := selector([]string{"apiserver", "ca"}); err == nil || !strings.Contains(err.Error(), `"ca" is not a certificate selfkube renews`) {
		t.Errorf("selector(ca): %v", err)
	}
	sel, err := selector([]string{"etcd/server", "admin.conf"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"etcd/server": true, "tls/etcd/server": true, "auth/admin.conf": true, "admin.conf": true, "etcd/peer": false, "apiserver": false} {
		if sel(name) != want {
			t.Errorf("sel(%q) = %v, want %v", name, !want, want)
		}
	}
}

// With Due, only the certificates it names are renewed: Within picks those with less
// than the window left, and a kubeconfig's certificate is judged as a pair's is.
func TestRenewerRenewsOnlyWhatIsDue(t *testing.T) {
	f := newFixture(t)
	// Issued at start for a day: 20 hours on, 4 hours are left.
	now := start.Add(20 * time.Hour)
	renew := func(window time.Duration) []Renewal {
		r := Renewer{CAs: CAs{pki.CA: f.ca, pki.FrontProxyCA: f.frontProxyCA},
			Issuer: pki.Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: 24 * time.Hour, Now: now},
			Due:    Within(window, now)}
		_, done, err := r.Files("secret kube-system/kube-apiserver", f.files)
		if err != nil {
			t.Fatal(err)
		}
		return done
	}
	if done := renew(3 * time.Hour); len(done) != 0 {
		t.Errorf("with a 3 h window and 4 h left, renewed %+v", done)
	}
	got := byName(renew(5 * time.Hour))
	for _, n := range []string{pki.APIServer, pki.FrontProxyClient, "controller-manager.conf"} {
		if got[n].NewSerial == "" {
			t.Errorf("with a 5 h window and 4 h left, %s was not renewed: %+v", n, got[n])
		}
	}
}
