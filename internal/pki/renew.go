package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
)

// SpecOf is the Spec an existing leaf certificate was made from: its subject, its SANs
// with extraSANs added (IPs and DNS names, duplicates dropped), and the Kind its extended
// key usages say. A CA, or a leaf of usages selfkube never issues, is an error: renewing
// keeps a certificate what it is and changes its key and validity only.
func SpecOf(cert *x509.Certificate, extraSANs ...string) (Spec, error) {
	if cert.IsCA {
		return Spec{}, fmt.Errorf("%q is a CA: a CA is rotated, not renewed", cert.Subject.CommonName)
	}
	server := slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	client := slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	var kind Kind
	switch {
	case server && client:
		kind = KindPeer
	case server:
		kind = KindServer
	case client:
		kind = KindClient
	default:
		return Spec{}, fmt.Errorf("%q is neither a serving nor a client certificate", cert.Subject.CommonName)
	}
	names := append(ipStrings(cert.IPAddresses), cert.DNSNames...)
	all := sans(names, extraSANs)
	return Spec{
		Name:         cert.Subject.CommonName,
		Kind:         kind,
		CommonName:   cert.Subject.CommonName,
		Organization: slices.Clone(cert.Subject.Organization),
		DNSNames:     all.dns,
		IPs:          all.ips,
	}, nil
}

// Renew issues old's successor: the same subject, SANs (plus extraSANs) and usages, a new
// key of the issuer's algorithm, and the issuer's validity from its Now, signed by ca. old
// must have been signed by ca: renewing from another CA would change whom it is trusted by.
func (is Issuer) Renew(old *x509.Certificate, ca *KeyPair, extraSANs ...string) (*KeyPair, error) {
	spec, err := SpecOf(old, extraSANs...)
	if err != nil {
		return nil, err
	}
	if ca == nil || ca.Cert == nil {
		return nil, fmt.Errorf("renewing %q: no CA", old.Subject.CommonName)
	}
	if err := old.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("renewing %q: it was not signed by the CA %q: %w", old.Subject.CommonName, ca.Cert.Subject.CommonName, err)
	}
	for _, s := range extraSANs {
		if s == "" || (net.ParseIP(s) == nil && len(s) > 253) {
			return nil, fmt.Errorf("renewing %q: %q is not a DNS name or IP", old.Subject.CommonName, s)
		}
	}
	return is.Issue(spec, ca)
}
