package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeContainerdConfig gives the node the containerd config `make host-setup` wrote to
// $SELFKUBE_CACHE/containerd-config.toml (hack/host-setup.sh owns its settings, such as
// restrict_oom_score_adj, which this machine kind needs).
func (n *Node) writeContainerdConfig() error {
	src := filepath.Join(n.h.cfg.CacheDir, "containerd-config.toml")
	cfg, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading the node containerd config: %w: run `make host-setup` first", err)
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
