// Package host knows where selfkube puts things on a machine, and how it writes them:
// atomically, with the right modes, reporting whether a file was written or reused.
package host

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Layout is the file layout of a node below Root ("/" on a real host; a temp dir in
// tests). The paths follow kubeadm's, so stock kubelet packaging and tools work.
type Layout struct {
	Root string
}

// Default is the layout of the real host.
var Default = Layout{Root: "/"}

func (l Layout) path(p ...string) string { return filepath.Join(append([]string{l.Root}, p...)...) }

// KubernetesDir is /etc/kubernetes.
func (l Layout) KubernetesDir() string { return l.path("etc/kubernetes") }

// ManifestsDir is the kubelet's static-pod directory.
func (l Layout) ManifestsDir() string { return l.path("etc/kubernetes/manifests") }

// PKIDir holds what stays on the node after the hand-over: the cluster CA certificate
// (the kubelet's client CA) and etcd's certificates.
func (l Layout) PKIDir() string { return l.path("etc/kubernetes/pki") }

// BootstrapSecretsDir holds the temporary control plane's credentials until the hand-over.
func (l Layout) BootstrapSecretsDir() string { return l.path("etc/kubernetes/bootstrap-secrets") }

// CheckpointsDir holds the checkpointer's copies of the control plane (see package
// checkpoint).
func (l Layout) CheckpointsDir() string { return l.path("etc/kubernetes/checkpoints") }

// KubeletKubeconfig is the kubelet's kubeconfig.
func (l Layout) KubeletKubeconfig() string { return l.path("etc/kubernetes/kubelet.conf") }

// BootstrapKubeletKubeconfig is the kubelet's bootstrap kubeconfig (joining nodes).
func (l Layout) BootstrapKubeletKubeconfig() string {
	return l.path("etc/kubernetes/bootstrap-kubelet.conf")
}

// AdminKubeconfig is the administrator's kubeconfig.
func (l Layout) AdminKubeconfig() string { return l.path("etc/kubernetes/admin.conf") }

// SuperAdminKubeconfig is the break-glass kubeconfig (system:masters).
func (l Layout) SuperAdminKubeconfig() string { return l.path("etc/kubernetes/super-admin.conf") }

// KubeletDir is the kubelet's state directory.
func (l Layout) KubeletDir() string { return l.path("var/lib/kubelet") }

// KubeletConfig is the kubelet's configuration file.
func (l Layout) KubeletConfig() string { return l.path("var/lib/kubelet/config.yaml") }

// KubeletFlagsEnv holds the kubelet flags that cannot be in its configuration file. The
// name is kubeadm's, so the kubelet drop-in of stock packages reads it.
func (l Layout) KubeletFlagsEnv() string { return l.path("var/lib/kubelet/kubeadm-flags.env") }

// StateDir is selfkube's own state on the node: the asset directory and the record of
// the files selfkube owns.
func (l Layout) StateDir() string { return l.path("var/lib/selfkube") }

// AssetDir is where init renders the cluster's assets.
func (l Layout) AssetDir() string { return l.path("var/lib/selfkube/assets") }

// Action says what WriteFile did.
type Action string

const (
	Written   Action = "wrote"
	Unchanged Action = "using existing"
)

// WriteFile writes data to path atomically (temp file, fsync, rename) with perm, creating
// parent directories (0755, or 0700 when perm is private). An identical file is left
// alone; its mode is still corrected.
func WriteFile(path string, data []byte, perm fs.FileMode) (Action, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if err := os.Chmod(path, perm); err != nil {
			return "", fmt.Errorf("setting mode of %s: %w", path, err)
		}
		return Unchanged, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	dirMode := fs.FileMode(0o755)
	if perm&0o077 == 0 {
		dirMode = 0o700
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return Written, nil
}
