package apiserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// adminUser is the client certificate's user; its group system:masters may do anything.
const adminUser = "selfkube-test-admin"

// pki is the throwaway PKI of one test server, as files in a directory.
type pki struct {
	CACert, ServingCert, ServingKey, AdminCert, AdminKey, ServiceAccountKey string
}

// writePKI writes a CA, a serving certificate for 127.0.0.1 and localhost, an admin client
// certificate in system:masters and a service-account signing key into dir.
func writePKI(dir string) (pki, error) {
	p := pki{
		CACert:            filepath.Join(dir, "ca.crt"),
		ServingCert:       filepath.Join(dir, "apiserver.crt"),
		ServingKey:        filepath.Join(dir, "apiserver.key"),
		AdminCert:         filepath.Join(dir, "admin.crt"),
		AdminKey:          filepath.Join(dir, "admin.key"),
		ServiceAccountKey: filepath.Join(dir, "sa.key"),
	}
	now := time.Now()
	caKey, err := newKey()
	if err != nil {
		return pki{}, err
	}
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "selfkube-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(ca, ca, caKey.Public(), caKey)
	if err != nil {
		return pki{}, fmt.Errorf("signing the CA: %w", err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return pki{}, fmt.Errorf("parsing the CA: %w", err)
	}
	if err := writePEM(p.CACert, "CERTIFICATE", caDER); err != nil {
		return pki{}, err
	}

	leaves := []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		{p.ServingCert, p.ServingKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{p.AdminCert, p.AdminKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: adminUser, Organization: []string{"system:masters"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, l := range leaves {
		key, err := newKey()
		if err != nil {
			return pki{}, err
		}
		l.tmpl.NotBefore, l.tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		l.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := sign(l.tmpl, ca, key.Public(), caKey)
		if err != nil {
			return pki{}, fmt.Errorf("signing %s: %w", l.cert, err)
		}
		if err := writePEM(l.cert, "CERTIFICATE", der); err != nil {
			return pki{}, err
		}
		if err := writeKey(l.key, key); err != nil {
			return pki{}, err
		}
	}

	saKey, err := newKey()
	if err != nil {
		return pki{}, err
	}
	return p, writeKey(p.ServiceAccountKey, saKey)
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	return key, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("choosing a serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
