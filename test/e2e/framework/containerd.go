package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// containerdConfig is the node's containerd 1.6 configuration. restrict_oom_score_adj is
// required on this machine kind: it refuses negative oom_score_adj even for root, and every
// sandbox would fail with "can't get final child's PID from pipe: EOF".
const containerdConfig = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`

// writeContainerdConfig writes the node's containerd config: the one `make host-setup`
// wrote to $SELFKUBE_CACHE/containerd-config.toml when there is one, else the same settings
// rendered here.
func (n *Node) writeContainerdConfig() error {
	cfg, err := os.ReadFile(filepath.Join(n.h.cfg.CacheDir, "containerd-config.toml"))
	if err != nil {
		sandbox, err := n.h.sandboxImage()
		if err != nil {
			return err
		}
		cfg = []byte(fmt.Sprintf(containerdConfig, sandbox))
	}
	p := filepath.Join(n.Dir(), "containerd.toml")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		return fmt.Errorf("writing containerd config of node %s: %w", n.Name, err)
	}
	return nil
}

func (h *Harness) containerdCommand(n *Node) []string {
	return []string{"containerd", "--config", filepath.Join(n.Dir(), "containerd.toml")}
}

// sandboxImage is the pause image kubeadm of the cached version expects, in registry.local.
func (h *Harness) sandboxImage() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sandbox != "" {
		return h.sandbox, nil
	}
	out, err := output(h.cfg.Kubeadm(), "config", "images", "list",
		"--kubernetes-version", h.cfg.KubeVersion, "--image-repository", "registry.local")
	if err != nil {
		return "", fmt.Errorf("asking kubeadm for its pause image: %w", err)
	}
	for _, l := range strings.Fields(out) {
		if strings.HasPrefix(l, "registry.local/pause:") {
			h.sandbox = l
			return l, nil
		}
	}
	return "", fmt.Errorf("kubeadm config images list names no pause image:\n%s", out)
}

// importImages loads every cached image tarball into the node's containerd, once: the
// content store is on the node's disk. A tarball that changed since (the selfkube image
// after a rebuild) is imported again.
func (n *Node) importImages(ctx context.Context) error {
	tars, err := filepath.Glob(filepath.Join(n.h.cfg.ImagesDir(), "*.tar"))
	if err != nil || len(tars) == 0 {
		return fmt.Errorf("no image tarballs in %s: run `make images`", n.h.cfg.ImagesDir())
	}
	record := filepath.Join(n.Dir(), "images-imported")
	done := map[string]bool{}
	if b, err := os.ReadFile(record); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			done[l] = true
		}
	}
	f, err := os.OpenFile(record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("recording imported images: %w", err)
	}
	defer f.Close()
	for _, tar := range tars {
		st, err := os.Stat(tar)
		if err != nil {
			return fmt.Errorf("reading image tarball: %w", err)
		}
		key := fmt.Sprintf("%s %d %d", filepath.Base(tar), st.Size(), st.ModTime().UnixNano())
		if done[key] {
			continue
		}
		if _, err := n.Exec(ctx, "ctr", "-n", "k8s.io", "images", "import", tar); err != nil {
			return fmt.Errorf("importing images into node %s: %w", n.Name, err)
		}
		if _, err := fmt.Fprintln(f, key); err != nil {
			return fmt.Errorf("recording imported images: %w", err)
		}
	}
	return nil
}
