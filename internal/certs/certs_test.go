package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/pki"
)

// issue makes a CA and a client certificate of it, the client valid for validity.
func issue(t *testing.T, now time.Time, validity time.Duration) (caPEM, certPEM []byte, serial string) {
	t.Helper()
	ca, err := pki.Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: 10 * 365 * 24 * time.Hour, Now: now}.
		Issue(pki.Spec{Name: "ca", Kind: pki.KindCA, CommonName: "kubernetes"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: validity, Now: now}.
		Issue(pki.Spec{Name: "admin", Kind: pki.KindClient, CA: "ca", CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}}, ca)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCertificate(ca.Cert), pki.EncodeCertificate(leaf.Cert), leaf.Cert.SerialNumber.Text(16)
}

// Every place a certificate lives is found, each one named with where it is: a PEM
// file, a bundle of two, a kubeconfig's client and CA certificates, a Secret's keys; a
// key or a plain file adds none; CAs are listed apart; the due ones are those with less
// than the renewal window left.
func TestCollectorFindsEveryCertificate(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	caPEM, shortPEM, shortSerial := issue(t, now.Add(-time.Hour), 10*24*time.Hour)
	_, longPEM, _ := issue(t, now.Add(-time.Hour), 365*24*time.Hour)

	dir := t.TempDir()
	write := func(name string, data []byte) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pki/ca.crt", caPEM)
	write("pki/ca.key", []byte("-----BEGIN EC PRIVATE KEY-----\nnot a certificate\n-----END EC PRIVATE KEY-----\n"))
	write("pki/bundle.crt", append(append([]byte{}, longPEM...), shortPEM...))
	write("manifests/etcd.yaml", []byte("apiVersion: v1\nkind: Pod\n"))
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://x:6443", CertificateAuthorityData: caPEM}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: shortPEM, ClientKeyData: []byte("secret key")}
	kcData, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	write("checkpoints/kube-scheduler/volumes/secret/scheduler.conf", kcData)

	c := NewCollector(now, 30*24*time.Hour)
	c.Dir(dir, "")
	c.Dir(filepath.Join(dir, "missing"), "")
	c.Secrets([]corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-apiserver"},
		Data: map[string][]byte{"apiserver.crt": longPEM, "token": []byte("abc")}}})
	r := c.Report()

	var leaves []string
	for _, l := range r.Certificates {
		leaves = append(leaves, l.Name+" @ "+l.Where)
	}
	want := []string{
		"bundle.crt @ file " + filepath.Join(dir, "pki/bundle.crt"), // the short one, soonest first
		"scheduler.conf (client) @ file " + filepath.Join(dir, "checkpoints/kube-scheduler/volumes/secret/scheduler.conf"),
		"apiserver.crt @ secret kube-system/kube-apiserver",
		"bundle.crt @ file " + filepath.Join(dir, "pki/bundle.crt"),
	}
	if strings.Join(leaves, "\n") != strings.Join(want, "\n") && !sameSet(leaves, want) {
		t.Errorf("certificates:\n%s\nwant:\n%s", strings.Join(leaves, "\n"), strings.Join(want, "\n"))
	}
	if len(r.CAs) != 2 || !r.CAs[0].CA {
		t.Errorf("CAs %+v, want the file's and the kubeconfig's", r.CAs)
	}
	if r.Certificates[0].NotAfter.After(r.Certificates[len(r.Certificates)-1].NotAfter) {
		t.Error("not sorted by expiry")
	}
	due := r.Due()
	if len(due) != 2 || due[0].Serial != shortSerial || due[1].Serial != shortSerial {
		t.Errorf("due %+v, want the two copies of the 10-day certificate", due)
	}
	if got := time.Duration(due[0].Residual); got < 9*24*time.Hour || got > 10*24*time.Hour {
		t.Errorf("residual %s, want just under 10 days", got)
	}
	if len(r.Unreadable) != 0 {
		t.Errorf("unreadable: %v", r.Unreadable)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
