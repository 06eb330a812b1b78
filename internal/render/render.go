// Package render writes a cluster's asset directory: the PKI (tls/), the kubeconfigs
// (auth/), the static pods a node starts from (bootstrap-manifests/) and the self-hosted
// control plane (manifests/).
//
// Rendering converges: on an existing directory the CA, valid leaves and the apiserver's
// encryption configuration (tls/encryption-config.yaml, the key of Secrets in etcd) are
// kept ("using existing …"), a certificate that no longer fits the configuration is an error that
// names it (never silently replaced), and manifests are rendered again from the current
// configuration, stale ones removed.
package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/pki"
	"github.com/selfkube/selfkube/internal/status"
)

// Directories of an asset directory.
const (
	TLSDir                = "tls"
	AuthDir               = kubeconfig.Dir
	BootstrapManifestsDir = "bootstrap-manifests"
	ManifestsDir          = "manifests"
)

// Options change how Render runs.
type Options struct {
	// DryRun plans everything and writes nothing.
	DryRun bool
	// Now is the clock for certificates; nil means time.Now.
	Now func() time.Time
	// Status shows progress; nil is quiet.
	Status *status.Printer
}

// Change is one file Render wrote, reused or removed (or would, in a dry run).
type Change struct {
	Path   string // relative to the asset directory
	Action string // "generated", "using existing", "wrote", "removed stale"
}

// Result is what Render did.
type Result struct {
	Changes []Change
	// Bootstrap and SelfHosted are the rendered objects, for callers that apply them.
	Bootstrap  []manifests.Asset
	SelfHosted []manifests.Asset
}

// Render converges dir onto cfg.
func Render(dir string, cfg *config.Config, opts Options) (*Result, error) {
	res := &Result{}
	pkiOpts := pki.Options{DryRun: opts.DryRun, Now: opts.Now}
	tlsDir, authDir := filepath.Join(dir, TLSDir), filepath.Join(dir, AuthDir)

	step := opts.Status.Start("certificates")
	certs, err := pki.Ensure(tlsDir, cfg, pkiOpts)
	if err == nil && cfg.Cluster.APIServer.EncryptsSecrets() {
		var enc pki.Result
		if enc, err = pki.EnsureEncryptionConfig(tlsDir, pkiOpts); err == nil {
			certs = append(certs, enc)
		}
	}
	step.Done(&err)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	if err := res.addPKI(dir, certs); err != nil {
		return nil, err
	}

	step = opts.Status.Start("kubeconfigs")
	confs, err := kubeconfig.Ensure(authDir, tlsDir, cfg, pkiOpts)
	step.Done(&err)
	if err != nil {
		return nil, fmt.Errorf("kubeconfigs: %w", err)
	}
	if err := res.addPKI(dir, confs); err != nil {
		return nil, err
	}

	step = opts.Status.Start("manifests")
	err = res.renderManifests(dir, cfg, opts.DryRun)
	step.Done(&err)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (r *Result) addPKI(dir string, results []pki.Result) error {
	for _, c := range results {
		p := c.Path
		if filepath.IsAbs(p) {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			p = filepath.ToSlash(rel)
		}
		r.Changes = append(r.Changes, Change{Path: p, Action: string(c.Action)})
	}
	return nil
}

func (r *Result) renderManifests(dir string, cfg *config.Config, dryRun bool) error {
	policy, err := r.writeAuditPolicy(dir, cfg, dryRun)
	if err != nil {
		return err
	}
	files, err := ReadFiles(dir)
	if err != nil {
		return err
	}
	if policy != nil {
		files[manifests.FileAuditPolicy] = policy
	}
	if dryRun {
		// Nothing was written: give the Secrets placeholders for what would have been.
		for _, c := range r.Changes {
			if _, ok := files[c.Path]; !ok {
				files[c.Path] = []byte("(generated at render time)")
			}
		}
	}
	if r.Bootstrap, err = manifests.Bootstrap(cfg); err != nil {
		return fmt.Errorf("building static pods: %w", err)
	}
	if r.SelfHosted, err = manifests.SelfHosted(cfg, files); err != nil {
		return fmt.Errorf("building the self-hosted control plane: %w", err)
	}
	for _, sub := range []struct {
		name   string
		assets []manifests.Asset
	}{{BootstrapManifestsDir, r.Bootstrap}, {ManifestsDir, r.SelfHosted}} {
		if err := r.writeAssets(dir, sub.name, sub.assets, dryRun); err != nil {
			return err
		}
	}
	return nil
}

// writeAuditPolicy writes the apiserver's audit policy from the configuration into the
// asset directory, where the temporary apiserver (through the bootstrap copy) and the
// apiserver Secret take it from, and returns it. With audit logging off it removes a
// policy an earlier render wrote, and returns nil.
func (r *Result) writeAuditPolicy(dir string, cfg *config.Config, dryRun bool) ([]byte, error) {
	file := filepath.Join(dir, filepath.FromSlash(manifests.FileAuditPolicy))
	audit := &cfg.Cluster.APIServer.Audit
	if !audit.On() || audit.Policy == nil {
		if _, err := os.Lstat(file); err != nil {
			return nil, nil
		}
		if !dryRun {
			if err := os.Remove(file); err != nil {
				return nil, fmt.Errorf("removing the audit policy of an earlier render: %w", err)
			}
		}
		r.Changes = append(r.Changes, Change{Path: manifests.FileAuditPolicy, Action: "removed stale"})
		return nil, nil
	}
	data, err := EncodeAuditPolicy(audit.Policy)
	if err != nil {
		return nil, err
	}
	action := string(host.Written)
	if !dryRun {
		act, err := host.WriteFile(file, data, 0o600)
		if err != nil {
			return nil, err
		}
		action = string(act)
	}
	r.Changes = append(r.Changes, Change{Path: manifests.FileAuditPolicy, Action: action})
	return data, nil
}

// EncodeAuditPolicy is the audit policy file the apiserver reads (--audit-policy-file).
func EncodeAuditPolicy(p *config.AuditPolicy) ([]byte, error) {
	data, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding the audit policy: %w", err)
	}
	return data, nil
}

// writeAssets writes one manifest folder and removes the YAML files in it that the
// current configuration no longer renders.
func (r *Result) writeAssets(dir, sub string, assets []manifests.Asset, dryRun bool) error {
	want := map[string]bool{}
	for _, a := range assets {
		want[a.Path] = true
		data, err := manifests.Encode(a.Object)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", a.Path, err)
		}
		// Secrets carry private keys.
		mode := fs.FileMode(0o644)
		if _, secret := a.Object.(*corev1.Secret); secret {
			mode = 0o600
		}
		action := string(host.Written)
		if !dryRun {
			act, err := host.WriteFile(filepath.Join(dir, a.Path), data, mode)
			if err != nil {
				return err
			}
			action = string(act)
		}
		r.Changes = append(r.Changes, Change{Path: a.Path, Action: action})
	}
	existing, err := filepath.Glob(filepath.Join(dir, sub, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range existing {
		rel := filepath.Join(sub, filepath.Base(f))
		if want[rel] {
			continue
		}
		if !dryRun {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("removing stale manifest: %w", err)
			}
		}
		r.Changes = append(r.Changes, Change{Path: rel, Action: "removed stale"})
	}
	return nil
}

// ReadFiles reads the credentials of an asset directory (tls/ and auth/) into the form
// the manifests' Secrets are built from. Missing folders are empty.
func ReadFiles(dir string) (manifests.Files, error) {
	files := manifests.Files{}
	for _, sub := range []string{TLSDir, AuthDir} {
		root := filepath.Join(dir, sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)] = data
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", root, err)
		}
	}
	return files, nil
}

// Summary lists the changes, one per line, sorted by path.
func (r *Result) Summary() []string {
	changes := slices.Clone(r.Changes)
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].Path < changes[j].Path })
	lines := make([]string, 0, len(changes))
	for _, c := range changes {
		lines = append(lines, fmt.Sprintf("%-16s %s", c.Action, c.Path))
	}
	return lines
}
