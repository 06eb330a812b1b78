package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/selfkube/selfkube/internal/config"
)

// KeyPair is a certificate and its private key; Cert is nil for a bare key pair.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Issuer makes new certificates and checks existing ones against their Spec.
type Issuer struct {
	// KeyAlgorithm of new keys (config.KeyAlgorithm*); existing keys must be of the
	// same family (RSA or ECDSA).
	KeyAlgorithm string
	// Validity of new certificates. A leaf never outlives its CA.
	Validity time.Duration
	// Now is the time certificates start and are checked at.
	Now time.Time
}

// NewKey generates a private key of a config.KeyAlgorithm* algorithm.
func NewKey(algorithm string) (crypto.Signer, error) {
	switch algorithm {
	case config.KeyAlgorithmECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case config.KeyAlgorithmRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case config.KeyAlgorithmRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case config.KeyAlgorithmRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("key algorithm %q is not supported: use one of %s",
		algorithm, strings.Join(config.KeyAlgorithms, ", "))
}

// Issue generates a key and a certificate for spec, signed by ca; a KindCA spec is
// self-signed and ca is ignored. A KindKeyPair spec gets a key only.
func (is Issuer) Issue(spec Spec, ca *KeyPair) (*KeyPair, error) {
	key, err := NewKey(is.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("generating the %s key: %w", spec.Name, err)
	}
	return is.IssueFor(spec, ca, key)
}

// IssueFor is Issue for an existing key.
func (is Issuer) IssueFor(spec Spec, ca *KeyPair, key crypto.Signer) (*KeyPair, error) {
	if spec.Kind == KindKeyPair {
		return &KeyPair{Key: key}, nil
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number for %s: %w", spec.Name, err)
	}
	notBefore := is.Now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(is.Validity),
		KeyUsage:              keyUsage(spec.Kind, key.Public()),
		ExtKeyUsage:           extKeyUsage(spec.Kind),
		BasicConstraintsValid: true,
		IsCA:                  spec.Kind == KindCA,
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPs,
	}
	parent, signer := tmpl, key
	if spec.Kind != KindCA {
		if ca == nil || ca.Cert == nil {
			return nil, fmt.Errorf("signing %s: no CA %s", spec.Name, spec.CA)
		}
		parent, signer = ca.Cert, ca.Key
		if tmpl.NotAfter.After(ca.Cert.NotAfter) {
			tmpl.NotAfter = ca.Cert.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing the %s certificate: %w", spec.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new %s certificate: %w", spec.Name, err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// Check lists how an existing key pair differs from spec: each entry is one difference,
// such as "missing SAN 10.0.0.5". It is empty when kp can be used as it is. A CA passes
// when it is a valid CA matching its key; a leaf must also be signed by ca, be valid now
// and have exactly the spec's subject, SANs, usages and key algorithm family.
func (is Issuer) Check(spec Spec, kp *KeyPair, ca *KeyPair) []string {
	var diffs []string
	if spec.Kind == KindKeyPair || kp.Cert == nil {
		if got, want := keyFamily(kp.Key.Public()), algorithmFamily(is.KeyAlgorithm); got != want {
			diffs = append(diffs, fmt.Sprintf("key algorithm is %s, configured %s", got, is.KeyAlgorithm))
		}
		return diffs
	}
	cert := kp.Cert
	if !publicKeysEqual(kp.Key.Public(), cert.PublicKey) {
		diffs = append(diffs, "private key does not match the certificate")
	}
	if is.Now.Before(cert.NotBefore) {
		diffs = append(diffs, fmt.Sprintf("not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339)))
	}
	if is.Now.After(cert.NotAfter) {
		diffs = append(diffs, fmt.Sprintf("expired on %s", cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if spec.Kind == KindCA {
		if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			diffs = append(diffs, "is not a certificate authority (needs CA:TRUE and key usage CertSign)")
		}
		return diffs
	}

	if got, want := keyFamily(cert.PublicKey), algorithmFamily(is.KeyAlgorithm); got != want {
		diffs = append(diffs, fmt.Sprintf("key algorithm is %s, configured %s", got, is.KeyAlgorithm))
	}
	if ca == nil || ca.Cert == nil {
		diffs = append(diffs, fmt.Sprintf("its CA %s is missing", spec.CA))
	} else if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		diffs = append(diffs, fmt.Sprintf("not signed by the CA %s", spec.CA))
	}
	if cert.Subject.CommonName != spec.CommonName {
		diffs = append(diffs, fmt.Sprintf("common name is %q, expected %q", cert.Subject.CommonName, spec.CommonName))
	}
	if got, want := sorted(cert.Subject.Organization), sorted(spec.Organization); !slices.Equal(got, want) {
		diffs = append(diffs, fmt.Sprintf("organization is %q, expected %q", got, want))
	}
	diffs = append(diffs, setDiff("SAN", append(ipStrings(spec.IPs), spec.DNSNames...),
		append(ipStrings(cert.IPAddresses), cert.DNSNames...))...)
	if cert.IsCA {
		diffs = append(diffs, "is a CA, expected a leaf certificate")
	}
	if got, want := cert.KeyUsage, keyUsage(spec.Kind, cert.PublicKey); got != want {
		diffs = append(diffs, fmt.Sprintf("key usage is %s, expected %s", keyUsageString(got), keyUsageString(want)))
	}
	if got, want := extKeyUsageStrings(cert.ExtKeyUsage), extKeyUsageStrings(extKeyUsage(spec.Kind)); !slices.Equal(got, want) {
		diffs = append(diffs, fmt.Sprintf("extended key usage is %v, expected %v", got, want))
	}
	return diffs
}

func keyUsage(k Kind, pub crypto.PublicKey) x509.KeyUsage {
	if k == KindCA {
		return x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	}
	u := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		// RSA key exchange in TLS 1.2 encrypts with the certificate's key.
		u |= x509.KeyUsageKeyEncipherment
	}
	return u
}

func extKeyUsage(k Kind) []x509.ExtKeyUsage {
	switch k {
	case KindServer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case KindClient:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case KindPeer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return nil
}

func keyUsageString(u x509.KeyUsage) string {
	names := []string{"DigitalSignature", "ContentCommitment", "KeyEncipherment", "DataEncipherment",
		"KeyAgreement", "CertSign", "CRLSign", "EncipherOnly", "DecipherOnly"}
	var out []string
	for i, n := range names {
		if u&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "|")
}

func extKeyUsageStrings(us []x509.ExtKeyUsage) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "ServerAuth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "ClientAuth")
		default:
			out = append(out, fmt.Sprintf("ExtKeyUsage(%d)", int(u)))
		}
	}
	return sorted(out)
}

// keyFamily names the algorithm family of a public key: RSA or ECDSA.
func keyFamily(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	}
	return fmt.Sprintf("%T", pub)
}

func algorithmFamily(algorithm string) string {
	family, _, _ := strings.Cut(algorithm, "-")
	return family
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// setDiff reports what want has that got lacks ("missing") and the reverse ("unexpected").
func setDiff(what string, want, got []string) []string {
	var diffs []string
	for _, w := range sorted(want) {
		if !slices.Contains(got, w) {
			diffs = append(diffs, fmt.Sprintf("missing %s %s", what, w))
		}
	}
	for _, g := range sorted(got) {
		if !slices.Contains(want, g) {
			diffs = append(diffs, fmt.Sprintf("unexpected %s %s", what, g))
		}
	}
	return diffs
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// EncodeCertificate is the PEM form of a certificate.
func EncodeCertificate(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// EncodeKey is the PEM form of a private key.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	return keyutil.MarshalPrivateKeyToPEM(key)
}

// EncodePublicKey is the PEM (PKIX) form of a public key, as kube-apiserver's
// --service-account-key-file reads it.
func EncodePublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseKey reads one PEM private key.
func ParseKey(data []byte) (crypto.Signer, error) {
	key, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T is not a signing key", key)
	}
	return signer, nil
}
