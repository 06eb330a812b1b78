// Package host knows where selfkube puts things on a machine, and how it writes them:
// atomically, with the right modes, reporting whether a file was written or reused.
package host

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
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

// HostPath is where an absolute host path from the configuration (etcd.local.dataDir,
// apiServer.audit.logDir) is in this layout: below Root.
func (l Layout) HostPath(p string) string { return l.path(p) }

// Action says what WriteFile did.
type Action string

const (
	Written   Action = "wrote"
	Unchanged Action = "using existing"
)

// WriteFile writes data to path atomically (temp file, fsync, rename, fsync of the
// directory) with perm, creating parent directories (0755, or 0700 when perm is private;
// existing ones are left as they are: EnsurePrivateDir tightens a directory). An identical
// regular file is left alone; its mode is still corrected, on the open file, so never
// through a symbolic link. A symbolic link (or anything else that is not a regular file)
// at path is replaced by the file, as the rename does, never written through.
func WriteFile(path string, data []byte, perm fs.FileMode) (Action, error) {
	same, err := sameRegularFile(path, data, perm)
	if err != nil {
		return "", err
	}
	if same {
		return Unchanged, nil
	}
	dirMode := fs.FileMode(0o755)
	if perm&0o077 == 0 {
		dirMode = 0o700
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
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
	// The rename is durable only once the directory entry is on disk.
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return Written, nil
}

// sameRegularFile reports whether path is a regular file holding data, and if so sets
// its mode to perm. It opens path without following a symbolic link (nor blocking on a
// FIFO) and changes the mode on the open file, so a link planted at path is never
// followed; a link or another kind of file is "not the same", for the caller to replace.
func sameRegularFile(path string, data []byte, perm fs.FileMode) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ELOOP):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Size() != int64(len(data)) {
		return false, nil
	}
	old, err := io.ReadAll(f)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	if !bytes.Equal(old, data) {
		return false, nil
	}
	if st.Mode().Perm() != perm {
		if err := f.Chmod(perm); err != nil {
			return false, fmt.Errorf("setting mode of %s: %w", path, err)
		}
	}
	return true, nil
}

// syncDir flushes a directory's entries (a rename or a new file in it) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return d.Close()
}

// PrivateDirMode is the mode of directories that hold keys or etcd's data.
const PrivateDirMode fs.FileMode = 0o700

// EnsurePrivateDir creates path and its missing parents, and makes path itself 0700
// whatever its mode was (MkdirAll leaves an existing directory alone): for directories
// that hold keys, and for etcd's data directory (CIS 1.1.11). Parents it creates are
// 0700 too; existing parents are left as they are. A symbolic link to a directory (a
// data directory moved to another disk) is followed.
func EnsurePrivateDir(path string) error {
	if err := os.MkdirAll(path, PrivateDirMode); err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	if st.Mode()&fs.ModePerm != PrivateDirMode || st.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		if err := os.Chmod(path, PrivateDirMode); err != nil {
			return fmt.Errorf("making %s private (0700): %w", path, err)
		}
	}
	return nil
}
