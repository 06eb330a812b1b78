package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
)

// File modes of what Ensure writes.
const (
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
	DirMode  fs.FileMode = 0o700
)

// Options change how Ensure runs.
type Options struct {
	// DryRun computes the same plan (and the same errors) but writes nothing.
	DryRun bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Time is the current time of the options' clock.
func (o Options) Time() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Action says what Ensure did (or, in a dry run, would do) with a file.
type Action string

const (
	Generated Action = "generated"
	Existing  Action = "using existing"
)

// Result is the outcome for one file.
type Result struct {
	Path   string
	Action Action
}

func (r Result) String() string { return fmt.Sprintf("%s %s", r.Action, r.Path) }

// Ensure converges dir (the PKI directory, an asset directory's tls/) onto Specs(cfg).
//
// A CA whose certificate and key exist and match is reused, whatever its key algorithm
// (a CA of one family may sign leaves of the other). A leaf is reused when it is
// valid now, signed by its CA and has exactly the expected subject, SANs, usages and key
// algorithm family. Anything else that exists (a certificate without its key, a key
// that does not match, a leaf that differs from its spec) is an error naming the file
// and the difference, and nothing is written: every file is checked before any is.
// Missing files are generated and written atomically, keys 0600 and certificates 0644,
// into directories that end 0700 however they were made.
// The results list every file, in Specs order.
func Ensure(dir string, cfg *config.Config, opts Options) ([]Result, error) {
	specs, err := Specs(cfg)
	if err != nil {
		return nil, err
	}
	now := opts.Time()
	certs := cfg.Cluster.Certificates
	caIssuer := Issuer{KeyAlgorithm: certs.KeyAlgorithm, Validity: certs.CAValidity.Duration, Now: now}
	leafIssuer := Issuer{KeyAlgorithm: certs.KeyAlgorithm, Validity: certs.Validity.Duration, Now: now}

	// Check everything that exists first.
	existing := map[string]*KeyPair{}
	unreadable := map[string]bool{}
	certified := map[string]bool{} // keys left without their certificate, certified now
	var problems []error
	for _, spec := range specs {
		issuer := leafIssuer
		if spec.Kind == KindCA {
			issuer = caIssuer
		}
		kp, pending, err := readExisting(dir, spec)
		if err != nil {
			problems = append(problems, err)
			unreadable[spec.Name] = true
			continue
		}
		if kp == nil || unreadable[spec.CA] {
			continue
		}
		if pending {
			// Certified now, in memory, so that what it signed checks against it.
			if got, want := keyFamily(kp.Key.Public()), algorithmFamily(issuer.KeyAlgorithm); got != want {
				problems = append(problems, fmt.Errorf("%s: key algorithm is %s, configured %s: remove it to regenerate it",
					fileNames(dir, spec)[1], got, issuer.KeyAlgorithm))
				unreadable[spec.Name] = true
				continue
			}
			if spec.Kind != KindCA && spec.Kind != KindKeyPair && existing[spec.CA] == nil {
				continue // its CA is new, so nothing was signed for this key: a new pair is made below
			}
			if kp, err = issuer.IssueFor(spec, existing[spec.CA], kp.Key); err != nil {
				return nil, err
			}
			certified[spec.Name] = true
		}
		existing[spec.Name] = kp
		if err := check(dir, spec, kp, issuer, existing[spec.CA]); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("checking the certificates in %s (nothing was written):\n%w", dir, errors.Join(problems...))
	}

	// Then make what is missing, in memory.
	var results []Result
	var writes []file
	pairs := map[string]*KeyPair{}
	for _, spec := range specs {
		names := fileNames(dir, spec)
		if kp := existing[spec.Name]; kp != nil {
			pairs[spec.Name] = kp
			if certified[spec.Name] {
				encoded, err := encode(names, kp)
				if err != nil {
					return nil, fmt.Errorf("encoding %s: %w", spec.Name, err)
				}
				// The key stays; its certificate (or public key) is new.
				keyFile, other := names[1], names[0]
				if spec.Kind == KindKeyPair {
					keyFile, other = names[0], names[1]
				}
				for _, f := range encoded {
					if f.path == other {
						writes = append(writes, f)
					}
				}
				results = append(results, Result{Path: keyFile, Action: Existing}, Result{Path: other, Action: Generated})
				continue
			}
			for _, n := range names {
				results = append(results, Result{Path: n, Action: Existing})
			}
			continue
		}
		issuer := leafIssuer
		if spec.Kind == KindCA {
			issuer = caIssuer
		}
		kp, err := issuer.Issue(spec, pairs[spec.CA])
		if err != nil {
			return nil, err
		}
		pairs[spec.Name] = kp
		encoded, err := encode(names, kp)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", spec.Name, err)
		}
		writes = append(writes, encoded...)
		for _, n := range names {
			results = append(results, Result{Path: n, Action: Generated})
		}
	}
	if opts.DryRun {
		return results, nil
	}
	// The directories hold keys: 0700, also when they existed or hold only reused files.
	dirs := []string{dir}
	for _, spec := range specs {
		if d := filepath.Dir(fileNames(dir, spec)[0]); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := host.EnsurePrivateDir(d); err != nil {
			return nil, err
		}
	}
	if err := writeFiles(writes); err != nil {
		return nil, err
	}
	return results, nil
}

// LoadCA reads the CA name (CA, FrontProxyCA or EtcdCA) from the PKI directory dir and
// checks that it is a CA and its key matches; validity in time is the caller's to check. A missing file gives an error that matches fs.ErrNotExist.
func LoadCA(dir, name string) (*KeyPair, error) {
	kp, pending, err := readExisting(dir, Spec{Name: name, Kind: KindCA})
	if err != nil {
		return nil, err
	}
	if kp == nil || pending {
		return nil, fmt.Errorf("loading the CA %s: %w: run `selfkube render` (or restore %s) first",
			filepath.Join(dir, name+".crt"), fs.ErrNotExist, filepath.Join(dir, name+".crt"))
	}
	names := fileNames(dir, Spec{Name: name, Kind: KindCA})
	if !publicKeysEqual(kp.Key.Public(), kp.Cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s: restore the CA's key", names[1], names[0])
	}
	if !kp.Cert.IsCA || kp.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a certificate authority (needs CA:TRUE and key usage CertSign): restore the CA", names[0])
	}
	return kp, nil
}

// fileNames are the paths of a spec's files: certificate and key, or key and public key.
func fileNames(dir string, spec Spec) [2]string {
	base := filepath.Join(dir, filepath.FromSlash(spec.Name))
	if spec.Kind == KindKeyPair {
		return [2]string{base + ".key", base + ".pub"}
	}
	return [2]string{base + ".crt", base + ".key"}
}

// readExisting loads a spec's files. Both missing gives nil, nil; a key without its
// certificate (or public key) gives the key with pending set: the pair was being written
// (the key first) or the key was brought to be certified. A certificate without its key,
// or a file that does not parse, is an error naming the file.
func readExisting(dir string, spec Spec) (kp *KeyPair, pending bool, err error) {
	names := fileNames(dir, spec)
	var data [2][]byte
	var found [2]bool
	for i, n := range names {
		b, err := os.ReadFile(n)
		switch {
		case err == nil:
			data[i], found[i] = b, true
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, false, fmt.Errorf("reading %s: %w", n, err)
		}
	}
	switch {
	case !found[0] && !found[1]:
		return nil, false, nil
	case spec.Kind != KindKeyPair && found[1] && !found[0]:
		// A key without its certificate: the key is written first, so this is a write
		// that stopped half-way (or a key brought for selfkube to certify). The key is
		// kept and gets its certificate (Cert nil).
		key, err := ParseKey(data[1])
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w: remove it to regenerate it", names[1], err)
		}
		return &KeyPair{Key: key}, true, nil
	case spec.Kind == KindKeyPair && found[0] && !found[1]:
		// The same for a key pair: the public key is derived again.
		key, err := ParseKey(data[0])
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w: remove it to regenerate it", names[0], err)
		}
		return &KeyPair{Key: key}, true, nil
	case !found[0] || !found[1]:
		have, lack := names[0], names[1]
		if !found[0] {
			have, lack = names[1], names[0]
		}
		return nil, false, fmt.Errorf("%s exists without %s: restore %s, or remove %s to regenerate both", have, lack, lack, have)
	}

	if spec.Kind == KindKeyPair {
		key, err := ParseKey(data[0])
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w: remove %s and %s to regenerate them", names[0], err, names[0], names[1])
		}
		pubs, err := keyutil.ParsePublicKeysPEM(data[1])
		if err != nil || len(pubs) != 1 {
			return nil, false, fmt.Errorf("%s: not a single PEM public key: remove %s and %s to regenerate them", names[1], names[0], names[1])
		}
		if !publicKeysEqual(key.Public(), pubs[0].(crypto.PublicKey)) {
			return nil, false, fmt.Errorf("%s does not match %s: remove both to regenerate them", names[1], names[0])
		}
		return &KeyPair{Key: key}, false, nil
	}
	certs, err := cert.ParseCertsPEM(data[0])
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w: remove %s and %s to regenerate them", names[0], err, names[0], names[1])
	}
	key, err := ParseKey(data[1])
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w: remove %s and %s to regenerate them", names[1], err, names[0], names[1])
	}
	return &KeyPair{Cert: certs[0], Key: key}, false, nil
}

// check turns the differences of an existing pair into one error naming its files.
func check(dir string, spec Spec, kp *KeyPair, issuer Issuer, ca *KeyPair) error {
	names := fileNames(dir, spec)
	if spec.Kind != KindCA && spec.Kind != KindKeyPair && ca == nil {
		caCert := filepath.Join(dir, filepath.FromSlash(spec.CA)+".crt")
		return fmt.Errorf("%s: its CA %s does not exist, and a new CA cannot have signed it: "+
			"restore the CA, or remove %s and %s to regenerate them", names[0], caCert, names[0], names[1])
	}
	diffs := issuer.Check(spec, kp, ca)
	if len(diffs) == 0 {
		return nil
	}
	for i, d := range diffs {
		if d == "private key does not match the certificate" {
			diffs[i] = fmt.Sprintf("private key %s does not match it", names[1])
		}
	}
	next := fmt.Sprintf("remove %s and %s to regenerate them", names[0], names[1])
	switch {
	case spec.Kind == KindCA:
		next = fmt.Sprintf("replace %s and %s with a valid CA, or remove them (and every certificate it signed) to regenerate them", names[0], names[1])
	case spec.Name == APIServer:
		next += ", or fix apiServer.certSANs"
	}
	return fmt.Errorf("%s: %s; %s", names[0], strings.Join(diffs, ", "), next)
}

type file struct {
	path string
	data []byte
	mode fs.FileMode
}

func encode(names [2]string, kp *KeyPair) ([]file, error) {
	key, err := EncodeKey(kp.Key)
	if err != nil {
		return nil, err
	}
	if kp.Cert == nil {
		pub, err := EncodePublicKey(kp.Key.Public())
		if err != nil {
			return nil, err
		}
		return []file{{names[0], key, KeyMode}, {names[1], pub, CertMode}}, nil
	}
	// The key first: a write that stops between the two leaves a key, which the next run
	// certifies, never a certificate without its key, which it could not fix.
	return []file{{names[1], key, KeyMode}, {names[0], EncodeCertificate(kp.Cert), CertMode}}, nil
}

func writeFiles(files []file) error {
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), DirMode); err != nil {
			return fmt.Errorf("creating the directory of %s: %w", f.path, err)
		}
		if _, err := host.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}
