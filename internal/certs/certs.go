// Package certs finds every certificate a selfkube cluster depends on, wherever it lives
// (files on a node, kubeconfigs, the control plane's Secrets, the checkpoints' copies),
// and says when each runs out: `selfkube certs check-expiration`.
//
// It reads; it never prints a key, and a kubeconfig's client key is not even decoded.
package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// Cert is one certificate found, in one place.
type Cert struct {
	// Name says what it is: the file or Secret key it came from, with "(client)" or
	// "(CA)" for the parts of a kubeconfig.
	Name string `json:"name"`
	// Where it lives: "file /etc/kubernetes/pki/etcd/server.crt",
	// "secret kube-system/kube-apiserver", "checkpoint kube-apiserver".
	Where    string    `json:"where"`
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	// Residual is the time left, at the report's time (negative: expired).
	Residual Duration `json:"residual"`
	CA       bool     `json:"ca"`
}

// Duration marshals as a Go duration string ("8759h59m").
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Report is what check-expiration says.
type Report struct {
	Time time.Time `json:"time"`
	// RenewBefore is the renewal window: a certificate with less left is due.
	RenewBefore Duration `json:"renewBefore"`
	// Certificates are the leaf certificates, soonest expiry first; CAs apart.
	Certificates []Cert `json:"certificates"`
	CAs          []Cert `json:"cas"`
	// Unreadable lists places that could not be read, and why.
	Unreadable []string `json:"unreadable,omitempty"`
}

// Due lists the certificates (CAs included) within the renewal window or expired.
func (r *Report) Due() []Cert {
	var out []Cert
	for _, c := range append(slices.Clone(r.Certificates), r.CAs...) {
		if time.Duration(c.Residual) < time.Duration(r.RenewBefore) {
			out = append(out, c)
		}
	}
	return out
}

// Collector gathers certificates into a report.
type Collector struct {
	report *Report
	seen   map[string]bool
}

// NewCollector starts a report at now with the renewal window renewBefore.
func NewCollector(now time.Time, renewBefore time.Duration) *Collector {
	return &Collector{report: &Report{Time: now, RenewBefore: Duration(renewBefore)}, seen: map[string]bool{}}
}

// Report returns the report, sorted: soonest expiry first.
func (c *Collector) Report() *Report {
	for _, list := range [][]Cert{c.report.Certificates, c.report.CAs} {
		slices.SortStableFunc(list, func(a, b Cert) int {
			if n := a.NotAfter.Compare(b.NotAfter); n != 0 {
				return n
			}
			return strings.Compare(a.Where+a.Name, b.Where+b.Name)
		})
	}
	return c.report
}

func (c *Collector) add(name, where string, cert *x509.Certificate) {
	key := where + "\x00" + name + "\x00" + cert.SerialNumber.String()
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	out := Cert{Name: name, Where: where, Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
		Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter, Residual: Duration(cert.NotAfter.Sub(c.report.Time)), CA: cert.IsCA}
	if cert.IsCA {
		c.report.CAs = append(c.report.CAs, out)
	} else {
		c.report.Certificates = append(c.report.Certificates, out)
	}
}

func (c *Collector) unreadable(where string, err error) {
	c.report.Unreadable = append(c.report.Unreadable, fmt.Sprintf("%s: %v", where, err))
}

// Data adds the certificates in data, found at where under name: PEM certificates
// (a bundle adds each), or a kubeconfig's embedded client and CA certificates (and its
// certificate files, read from disk). Anything else holds none.
func (c *Collector) Data(name, where string, data []byte) {
	if bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
		c.pem(name, where, data)
		return
	}
	if bytes.Contains(data, []byte("clusters:")) && bytes.Contains(data, []byte("users:")) {
		c.kubeconfig(name, where, data)
	}
}

func (c *Collector) pem(name, where string, data []byte) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			c.unreadable(where+" "+name, err)
			continue
		}
		c.add(name, where, cert)
	}
}

func (c *Collector) kubeconfig(name, where string, data []byte) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return // YAML that only looks like a kubeconfig
	}
	for _, auth := range cfg.AuthInfos {
		switch {
		case len(auth.ClientCertificateData) > 0:
			c.pem(name+" (client)", where, auth.ClientCertificateData)
		case auth.ClientCertificate != "":
			if b, err := os.ReadFile(auth.ClientCertificate); err == nil {
				c.pem(name+" (client: "+auth.ClientCertificate+")", where, b)
			}
		}
	}
	for _, cl := range cfg.Clusters {
		if len(cl.CertificateAuthorityData) > 0 {
			c.pem(name+" (CA)", where, cl.CertificateAuthorityData)
		}
	}
}

// maxFile is the largest file read: certificates and kubeconfigs are small.
const maxFile = 1 << 20

// Dir adds the certificates of every regular file below dir (links are not followed),
// each found at "file <path>", or, with label, at "<label>" with its path below dir as
// name. A missing dir adds nothing.
func (c *Collector) Dir(dir, label string) {
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			c.unreadable(path, err)
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil || info.Size() > maxFile {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			c.unreadable(path, err)
			return nil
		}
		if label == "" {
			c.Data(filepath.Base(path), "file "+path, data)
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		c.Data(rel, label, data)
		return nil
	})
	if err != nil {
		c.unreadable(dir, err)
	}
}

// Secrets adds the certificates in secrets, each key of each at
// "secret <namespace>/<name>".
func (c *Collector) Secrets(secrets []corev1.Secret) {
	for _, s := range secrets {
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			c.Data(k, "secret "+s.Namespace+"/"+s.Name, s.Data[k])
		}
	}
}
