// Package pkitest makes certificate authorities for unit tests.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"k8s.io/client-go/util/cert"
)

// NewCA returns a fresh self-signed CA certificate named "kubernetes" and its PEM.
func NewCA(t testing.TB) (*x509.Certificate, []byte) {
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
