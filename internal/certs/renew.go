package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/pki"
)

// CAs are the certificate authorities a renewal may sign with, by name (pki.CA,
// pki.FrontProxyCA, pki.EtcdCA). A CA known only by its certificate (its key is not on
// this node) has a nil Key: it is recognised as the issuer, and renews nothing.
type CAs map[string]*pki.KeyPair

// issuerOf is the CA that signed cert ("" and nil if none of them did).
func (c CAs) issuerOf(cert *x509.Certificate) (string, *pki.KeyPair) {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if kp := c[n]; kp != nil && kp.Cert != nil && cert.CheckSignatureFrom(kp.Cert) == nil {
			return n, kp
		}
	}
	return "", nil
}

// Renewal is one certificate renewed, or (in a dry run) to be renewed, or skipped.
type Renewal struct {
	// Name is the certificate's name: a file or key without ".crt" ("apiserver",
	// "etcd/server", "apiserver-etcd-client"), or a kubeconfig's file name ("admin.conf").
	Name string `json:"name"`
	// Where it lives: "secret kube-system/kube-apiserver", or a directory.
	Where    string    `json:"where"`
	Subject  string    `json:"subject"`
	CA       string    `json:"ca,omitempty"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	// NewSerial and NewNotAfter are the renewed certificate's (empty in a dry run).
	NewSerial   string    `json:"newSerial,omitempty"`
	NewNotAfter time.Time `json:"newNotAfter,omitzero"`
	// Skipped says why it was not renewed.
	Skipped string `json:"skipped,omitempty"`
	// CopyOf names the Secret a file on the node copies: it got the Secret's renewed
	// certificate.
	CopyOf string `json:"copyOf,omitempty"`
}

// Renewer renews leaf certificates where they live, keeping each one's subject, SANs and
// usages; a new key, the issuer's validity from its Now.
type Renewer struct {
	CAs    CAs
	Issuer pki.Issuer
	// Select says which names to renew; nil renews all.
	Select func(name string) bool
	// Due, when set, also says which certificates to renew: those it is true of (the
	// ones within the renewal window).
	Due func(cert *x509.Certificate) bool
	// ExtraSANs are added to the API server's serving certificate ("apiserver").
	ExtraSANs []string
	// DryRun says what would be renewed and changes nothing.
	DryRun bool
}

// Files renews, in files (a Secret's data by key, or a directory's files by slash-separated
// path), each leaf certificate NAME.crt beside its NAME.key and each kubeconfig NAME.conf
// with an embedded client certificate. CAs, key pairs, bundles and kubeconfigs that point
// at files are left alone. It returns the files with the renewed ones replaced (a new map;
// files itself is not changed) and a Renewal per certificate it selected.
func (r Renewer) Files(where string, files map[string][]byte) (map[string][]byte, []Renewal, error) {
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = v
	}
	var done []Renewal
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var (
			rn  *Renewal
			err error
		)
		switch {
		case strings.HasSuffix(k, ".crt"):
			base := strings.TrimSuffix(k, ".crt")
			if _, ok := files[base+".key"]; !ok {
				continue
			}
			rn, err = r.renewPair(where, base, out)
		case strings.HasSuffix(k, ".conf"):
			rn, err = r.renewKubeconfig(where, k, out)
		default:
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("renewing %s in %s: %w", k, where, err)
		}
		if rn != nil {
			done = append(done, *rn)
		}
	}
	return out, done, nil
}

func (r Renewer) selected(name string) bool { return r.Select == nil || r.Select(name) }

// renewPair renews base.crt and base.key in files.
func (r Renewer) renewPair(where, base string, files map[string][]byte) (*Renewal, error) {
	if !r.selected(base) {
		return nil, nil
	}
	cert, err := parseCert(files[base+".crt"])
	if err != nil || cert.IsCA || r.Due != nil && !r.Due(cert) {
		return nil, err
	}
	var extra []string
	if base == pki.APIServer {
		extra = r.ExtraSANs
	}
	rn, kp, err := r.renew(where, base, cert, extra)
	if err != nil || kp == nil {
		return rn, err
	}
	key, err := pki.EncodeKey(kp.Key)
	if err != nil {
		return nil, err
	}
	files[base+".crt"], files[base+".key"] = pki.EncodeCertificate(kp.Cert), key
	return rn, nil
}

// renewKubeconfig renews the embedded client certificate of the current user of the
// kubeconfig files[name]; the server and the CA stay as they are.
func (r Renewer) renewKubeconfig(where, name string, files map[string][]byte) (*Renewal, error) {
	if !r.selected(name) || path.Base(name) == "kubelet.conf" {
		return nil, nil // the kubelet rotates its own client certificate (rotateCertificates)
	}
	kc, err := clientcmd.Load(files[name])
	if err != nil {
		return nil, nil // not a kubeconfig: nothing of ours
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil || len(kc.AuthInfos[ctx.AuthInfo].ClientCertificateData) == 0 {
		return nil, nil // a token, or certificate files (the kubelet's, which it rotates itself)
	}
	user := kc.AuthInfos[ctx.AuthInfo]
	cert, err := parseCert(user.ClientCertificateData)
	if err != nil || r.Due != nil && !r.Due(cert) {
		return nil, err
	}
	rn, kp, err := r.renew(where, name, cert, nil)
	if err != nil || kp == nil {
		return rn, err
	}
	key, err := pki.EncodeKey(kp.Key)
	if err != nil {
		return nil, err
	}
	user.ClientCertificateData, user.ClientKeyData = pki.EncodeCertificate(kp.Cert), key
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, err
	}
	files[name] = data
	return rn, nil
}

// renew issues cert's successor, or says why it cannot (kp nil).
func (r Renewer) renew(where, name string, cert *x509.Certificate, extraSANs []string) (*Renewal, *pki.KeyPair, error) {
	rn := &Renewal{Name: name, Where: where, Subject: cert.Subject.String(), Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter}
	caName, ca := r.CAs.issuerOf(cert)
	rn.CA = caName
	switch {
	case ca == nil:
		rn.Skipped = fmt.Sprintf("signed by %q, which is none of the cluster's CAs", cert.Issuer.String())
		return rn, nil, nil
	case ca.Key == nil:
		rn.Skipped = fmt.Sprintf("the key of the CA %s is not on this node", caName)
		return rn, nil, nil
	case r.DryRun:
		return rn, nil, nil
	}
	kp, err := r.Issuer.Renew(cert, ca, extraSANs...)
	if err != nil {
		return nil, nil, err
	}
	rn.NewSerial, rn.NewNotAfter = kp.Cert.SerialNumber.Text(16), kp.Cert.NotAfter
	return rn, kp, nil
}

// Within is a Renewer's Due: the certificates with less than renewBefore left at now.
func Within(renewBefore time.Duration, now time.Time) func(*x509.Certificate) bool {
	return func(c *x509.Certificate) bool { return c.NotAfter.Sub(now) < renewBefore }
}

// parseCert parses the first PEM certificate of data.
func parseCert(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// certOf is the certificate of a PEM file or the client certificate embedded in a
// kubeconfig (nil if neither).
func certOf(data []byte) *x509.Certificate {
	if c, err := parseCert(data); err == nil {
		return c
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		return nil
	}
	if ctx := kc.Contexts[kc.CurrentContext]; ctx != nil && kc.AuthInfos[ctx.AuthInfo] != nil {
		if c, err := parseCert(kc.AuthInfos[ctx.AuthInfo].ClientCertificateData); err == nil {
			return c
		}
	}
	return nil
}
