package apiserver

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	return cert
}

func TestWritePKI(t *testing.T) {
	p, err := writePKI(t.TempDir())
	if err != nil {
		t.Fatalf("writePKI: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.CACert))

	serving := readCert(t, p.ServingCert)
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		if _, err := serving.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	if _, err := serving.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("serving certificate verifies for example.com, want only the loopback names")
	}

	admin := readCert(t, p.AdminCert)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate as a client certificate: %v", err)
	}
	if admin.Subject.CommonName != adminUser || !slices.Equal(admin.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin subject = %v, want CN=%s O=system:masters", admin.Subject, adminUser)
	}

	for _, key := range []string{p.ServingKey, p.AdminKey, p.ServiceAccountKey} {
		b, err := os.ReadFile(key)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			t.Fatalf("%s holds no PEM block", key)
		}
		if _, err := x509.ParseECPrivateKey(block.Bytes); err != nil {
			t.Errorf("%s: %v", key, err)
		}
		if info, err := os.Stat(key); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v (%v), want 0600", key, info.Mode().Perm(), err)
		}
	}
}
