package network

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
)

// Default directories of the DaemonSet: the image's plugins and the host paths mounted
// into the pod.
const (
	DefaultImageCNIBinDir = "/opt/cni/bin"
	DefaultHostCNIBinDir  = "/host/opt/cni/bin"
	DefaultHostCNIConfDir = "/host/etc/cni/net.d"
	DefaultConflistName   = "10-selfkube.conflist"
)

// InstallOptions are the settings of `selfkube network install-cni`.
type InstallOptions struct {
	// From is the directory whose regular files are installed (the image's plugins).
	From string
	// To is the host's plugin directory, mounted into the init container.
	To string
}

// DefaultInstallOptions returns the options the DaemonSet's init container uses.
func DefaultInstallOptions() InstallOptions {
	return InstallOptions{From: DefaultImageCNIBinDir, To: DefaultHostCNIBinDir}
}

// InstallCNI copies every regular file of opts.From into opts.To with mode 0755. Each
// file is written to a temporary file beside its destination and renamed over it, so a
// kubelet running a plugin at that moment sees the old or the new binary, never half of
// one. A destination that already holds the same bytes is left alone: a second run is
// a no-op. Files in opts.To that opts.From lacks are left alone too.
func InstallCNI(opts InstallOptions, log *slog.Logger) error {
	entries, err := os.ReadDir(opts.From)
	if err != nil {
		return fmt.Errorf("reading the CNI plugins to install: %w; check that the image carries them in %s", err, opts.From)
	}
	if err := os.MkdirAll(opts.To, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w; check the hostPath mount of the host's CNI bin directory", opts.To, err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("no CNI plugins in %s: the image is incomplete; rebuild it with the plugins in /opt/cni/bin", opts.From)
	}
	installed, kept := 0, 0
	for _, name := range names {
		src, dst := filepath.Join(opts.From, name), filepath.Join(opts.To, name)
		content, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("reading CNI plugin %s: %w", src, err)
		}
		if same, err := sameContent(dst, content); err != nil {
			return err
		} else if same {
			kept++
			log.Debug("using existing CNI plugin", "path", dst)
			continue
		}
		if err := writeFileAtomic(dst, content, 0o755); err != nil {
			return fmt.Errorf("installing CNI plugin %s: %w", name, err)
		}
		installed++
		log.Info("installed CNI plugin", "path", dst)
	}
	log.Info("CNI plugins in place", "dir", opts.To, "installed", installed, "unchanged", kept)
	return nil
}

// sameContent reports whether path is a regular file holding exactly content, with the
// execute bits set.
func sameContent(path string, content []byte) (bool, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("inspecting %s: %w", path, err)
	}
	if !info.Mode().IsRegular() || info.Size() != int64(len(content)) || info.Mode().Perm()&0o111 != 0o111 {
		return false, nil
	}
	old, err := io.ReadAll(f)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	return bytes.Equal(old, content), nil
}
