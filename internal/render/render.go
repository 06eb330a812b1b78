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
	"log/slog"
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
	// Log, when set, receives each certificate and kubeconfig made or reused, at debug
	// level.
	Log *slog.Logger
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
	return NewPass(dir, cfg, opts).Manifests()
}

// Pass renders one asset directory in order, each step at most once: certificates, then
// kubeconfigs (signed by those certificates), then manifests (which carry both). A
// command that needs the steps at different times (init's certs, kubeconfigs and
// static-pod phases) runs them through one Pass; a step asked for before the one it
// depends on runs that one first.
type Pass struct {
	dir  string
	cfg  *config.Config
	opts Options
	res  Result
	done int // steps done: 1 certificates, 2 kubeconfigs, 3 manifests
}

// NewPass starts a render of dir for cfg.
func NewPass(dir string, cfg *config.Config, opts Options) *Pass {
	return &Pass{dir: dir, cfg: cfg, opts: opts}
}

func (p *Pass) log(results []pki.Result) {
	if p.opts.Log == nil {
		return
	}
	for _, r := range results {
		p.opts.Log.Debug(r.String())
	}
}

func (p *Pass) pkiOptions() pki.Options { return pki.Options{DryRun: p.opts.DryRun, Now: p.opts.Now} }

// Certificates ensures the CAs, certificates, keys and the encryption configuration.
func (p *Pass) Certificates() (*Result, error) {
	if p.done >= 1 {
		return &p.res, nil
	}
	step := p.opts.Status.Start("certificates")
	tlsDir := filepath.Join(p.dir, TLSDir)
	certs, err := pki.Ensure(tlsDir, p.cfg, p.pkiOptions())
	if err == nil && p.cfg.Cluster.APIServer.EncryptsSecrets() {
		var enc pki.Result
		if enc, err = pki.EnsureEncryptionConfig(tlsDir, p.pkiOptions()); err == nil {
			certs = append(certs, enc)
		}
	}
	step.Done(&err)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	p.log(certs)
	if err := p.res.addPKI(p.dir, certs); err != nil {
		return nil, err
	}
	p.done = 1
	return &p.res, nil
}

// Kubeconfigs ensures the kubeconfigs of the components and the administrators.
func (p *Pass) Kubeconfigs() (*Result, error) {
	if p.done >= 2 {
		return &p.res, nil
	}
	if _, err := p.Certificates(); err != nil {
		return nil, err
	}
	step := p.opts.Status.Start("kubeconfigs")
	confs, err := kubeconfig.Ensure(filepath.Join(p.dir, AuthDir), filepath.Join(p.dir, TLSDir), p.cfg, p.pkiOptions())
	step.Done(&err)
	if err != nil {
		return nil, fmt.Errorf("kubeconfigs: %w", err)
	}
	p.log(confs)
	if err := p.res.addPKI(p.dir, confs); err != nil {
		return nil, err
	}
	p.done = 2
	return &p.res, nil
}

// Manifests renders the static pods and the self-hosted objects; the Result then holds
// them and every change of the pass.
func (p *Pass) Manifests() (*Result, error) {
	if p.done >= 3 {
		return &p.res, nil
	}
	if _, err := p.Kubeconfigs(); err != nil {
		return nil, err
	}
	step := p.opts.Status.Start("manifests")
	err := p.res.renderManifests(p.dir, p.cfg, p.opts.DryRun)
	step.Done(&err)
	if err != nil {
		return nil, err
	}
	p.done = 3
	return &p.res, nil
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
