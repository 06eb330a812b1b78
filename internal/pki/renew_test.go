package pki

import (
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/selfkube/selfkube/internal/config"
)

// A renewed certificate is its predecessor with a new key and a new validity: the same
// subject, SANs (plus those asked) and usages, signed by the same CA; a CA, and a
// certificate another CA signed, are refused.
func TestRenew(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	is := Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: time.Hour, Now: start}
	caSpec := Spec{Name: CA, Kind: KindCA, CommonName: "kubernetes"}
	ca, err := Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: 10 * 365 * 24 * time.Hour, Now: start}.Issue(caSpec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []Spec{
		{Name: APIServer, Kind: KindServer, CA: CA, CommonName: "kube-apiserver",
			DNSNames: []string{"kubernetes", "localhost"}, IPs: []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("172.31.0.71")}},
		{Name: "admin", Kind: KindClient, CA: CA, CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}},
		{Name: EtcdPeer, Kind: KindPeer, CA: CA, CommonName: "rc1", DNSNames: []string{"rc1"}, IPs: []net.IP{net.ParseIP("172.31.0.71")}},
	} {
		old, err := is.Issue(spec, ca)
		if err != nil {
			t.Fatal(err)
		}
		later := is
		later.Now = start.Add(50 * time.Minute)
		renewed, err := later.Renew(old.Cert, ca)
		if err != nil {
			t.Fatalf("%s: %v", spec.Name, err)
		}
		if diffs := later.Check(spec, renewed, ca); len(diffs) > 0 {
			t.Errorf("%s: the renewed certificate differs from what it renews: %v", spec.Name, diffs)
		}
		if renewed.Cert.SerialNumber.Cmp(old.Cert.SerialNumber) == 0 || publicKeysEqual(renewed.Key.Public(), old.Key.Public()) {
			t.Errorf("%s: same serial or key as before", spec.Name)
		}
		if !renewed.Cert.NotAfter.Equal(later.Now.Add(time.Hour)) {
			t.Errorf("%s: valid until %s, want %s", spec.Name, renewed.Cert.NotAfter, later.Now.Add(time.Hour))
		}
	}

	api, err := is.Issue(Spec{Name: APIServer, Kind: KindServer, CA: CA, CommonName: "kube-apiserver", DNSNames: []string{"kubernetes"}}, ca)
	if err != nil {
		t.Fatal(err)
	}
	more, err := is.Renew(api.Cert, ca, "api.example.com", "192.0.2.7", "kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(more.Cert.DNSNames, []string{"kubernetes", "api.example.com"}) || len(more.Cert.IPAddresses) != 1 || !more.Cert.IPAddresses[0].Equal(net.ParseIP("192.0.2.7")) {
		t.Errorf("with extra SANs: DNS %v, IPs %v", more.Cert.DNSNames, more.Cert.IPAddresses)
	}

	other, err := is.Issue(Spec{Name: "other", Kind: KindCA, CommonName: "other-ca"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is.Renew(api.Cert, other); err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Errorf("renewing with another CA: %v, want a refusal", err)
	}
	if _, err := is.Renew(ca.Cert, ca); err == nil || !strings.Contains(err.Error(), "is a CA") {
		t.Errorf("renewing a CA: %v, want a refusal", err)
	}
	if _, err := SpecOf(&x509.Certificate{}); err == nil {
		t.Error("a certificate without usages: no error")
	}
}
