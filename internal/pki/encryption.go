package pki

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/host"
)

// EncryptionConfigFile is the kube-apiserver's encryption configuration, relative to the
// PKI directory. It holds the key that encrypts Secrets in etcd, so it is kept like a CA
// key: generated once, never replaced, 0600.
const EncryptionConfigFile = "encryption-config.yaml"

// The apiserver.config.k8s.io/v1 EncryptionConfiguration kind (kube-apiserver
// --encryption-provider-config).
const (
	EncryptionConfigAPIVersion = "apiserver.config.k8s.io/v1"
	EncryptionConfigKind       = "EncryptionConfiguration"
)

// encryptionKeyBytes is the length of a secretbox key (XSalsa20-Poly1305).
const encryptionKeyBytes = 32

// EncryptionConfiguration mirrors the part of apiserver.config.k8s.io/v1
// EncryptionConfiguration that selfkube writes.
type EncryptionConfiguration struct {
	APIVersion string                   `json:"apiVersion"`
	Kind       string                   `json:"kind"`
	Resources  []EncryptionResourceRule `json:"resources"`
}

// EncryptionResourceRule lists resources and the providers that encrypt them, the first
// one for writing, all of them in order for reading.
type EncryptionResourceRule struct {
	Resources []string             `json:"resources"`
	Providers []EncryptionProvider `json:"providers"`
}

// EncryptionProvider is one provider; exactly one field is set.
type EncryptionProvider struct {
	Secretbox *EncryptionKeys `json:"secretbox,omitempty"`
	AESCBC    *EncryptionKeys `json:"aescbc,omitempty"`
	AESGCM    *EncryptionKeys `json:"aesgcm,omitempty"`
	// Identity stores data as it is: last in the list, it reads what was written before
	// encryption was turned on.
	Identity *struct{} `json:"identity,omitempty"`
}

// EncryptionKeys are the keys of a provider; the first encrypts, all decrypt.
type EncryptionKeys struct {
	Keys []EncryptionKey `json:"keys"`
}

// EncryptionKey is a named key, base64-encoded.
type EncryptionKey struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// NewEncryptionConfig is a new encryption configuration for Secrets: secretbox with a
// random 32-byte key, then identity, so that Secrets written before stay readable.
func NewEncryptionConfig() ([]byte, error) {
	key := make([]byte, encryptionKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the encryption key: %w", err)
	}
	c := EncryptionConfiguration{
		APIVersion: EncryptionConfigAPIVersion,
		Kind:       EncryptionConfigKind,
		Resources: []EncryptionResourceRule{{
			Resources: []string{"secrets"},
			Providers: []EncryptionProvider{
				{Secretbox: &EncryptionKeys{Keys: []EncryptionKey{{Name: "key1", Secret: base64.StdEncoding.EncodeToString(key)}}}},
				{Identity: &struct{}{}},
			},
		}},
	}
	data, err := yaml.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encoding the encryption configuration: %w", err)
	}
	return data, nil
}

// ParseEncryptionConfig decodes an encryption configuration and checks that it is one
// and that it covers Secrets. It accepts what an operator may put there on rotation
// (other providers, KMS, more resources), so it decodes leniently and checks only that.
func ParseEncryptionConfig(data []byte) (*EncryptionConfiguration, error) {
	var c EncryptionConfiguration
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if c.APIVersion != EncryptionConfigAPIVersion || c.Kind != EncryptionConfigKind {
		return nil, fmt.Errorf("it is a %s %s, not a %s %s", c.APIVersion, c.Kind, EncryptionConfigAPIVersion, EncryptionConfigKind)
	}
	for _, r := range c.Resources {
		if len(r.Providers) > 0 && slices.ContainsFunc(r.Resources, func(s string) bool {
			return s == "secrets" || s == "*." || s == "*.*"
		}) {
			return &c, nil
		}
	}
	return nil, errors.New("no rule covers secrets")
}

// EnsureEncryptionConfig makes sure dir (the PKI directory) holds the apiserver's
// encryption configuration. An existing one is kept whatever its keys (key rotation
// edits it by hand), but must parse; a missing one is generated and written 0600.
func EnsureEncryptionConfig(dir string, opts Options) (Result, error) {
	path := filepath.Join(dir, EncryptionConfigFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if _, err := ParseEncryptionConfig(data); err != nil {
			return Result{}, fmt.Errorf("%s: %v: restore it from a backup; never replace it while Secrets are encrypted "+
				"with its keys, they would be unreadable", path, err)
		}
		if !opts.DryRun {
			// Keep it private, as a key.
			if _, err := host.WriteFile(path, data, KeyMode); err != nil {
				return Result{}, err
			}
		}
		return Result{Path: path, Action: Existing}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Result{}, fmt.Errorf("reading %s: %w", path, err)
	}
	res := Result{Path: path, Action: Generated}
	if opts.DryRun {
		return res, nil
	}
	data, err = NewEncryptionConfig()
	if err != nil {
		return Result{}, err
	}
	if err := host.EnsurePrivateDir(dir); err != nil {
		return Result{}, err
	}
	if _, err := host.WriteFile(path, data, KeyMode); err != nil {
		return Result{}, err
	}
	return res, nil
}
