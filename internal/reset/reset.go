// Package reset removes what selfkube put on a node, so the node can be used again.
package reset

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/initcluster"
)

// Options of a reset.
type Options struct {
	Layout host.Layout
	// RemoveEtcdData also deletes etcd's data directory: the cluster's state.
	RemoveEtcdData bool
	// EtcdDataDir is etcd's data directory (from the configuration).
	EtcdDataDir string
	// DryRun lists what would be removed.
	DryRun bool
}

// Plan lists the paths a reset removes, in order. Static pods are only those selfkube
// recorded as its own.
func Plan(opts Options) ([]string, error) {
	l := opts.Layout
	state, err := initcluster.LoadState(l)
	if err != nil {
		// A damaged state file is no reason to keep a node from being reset.
		state = initcluster.State{}
	}
	// Active checkpoints first: the kubelet stops their pods.
	active, err := filepath.Glob(filepath.Join(l.ManifestsDir(), checkpoint.StaticPodName("*")+".yaml"))
	if err != nil {
		return nil, err
	}
	paths := append(active, state.Owned...)
	// What a join wrote, by its record (an init records its own in the state).
	if rec, err := host.LoadRecord(l, "join"); err == nil {
		paths = append(paths, rec.Owned...)
	}
	paths = append(paths, l.CheckpointsDir(),
		l.BootstrapSecretsDir(), l.PKIDir(),
		l.AdminKubeconfig(), l.SuperAdminKubeconfig(), l.KubeletKubeconfig(), l.BootstrapKubeletKubeconfig(),
		l.KubeletConfig(), l.KubeletFlagsEnv(), filepath.Join(l.KubeletDir(), "pki"),
		l.StateDir(),
	)
	if opts.RemoveEtcdData {
		dir := opts.EtcdDataDir
		if dir == "" {
			dir = config.DefaultEtcdDataDir
		}
		paths = append(paths, filepath.Join(l.Root, dir))
	}
	var existing []string
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		if _, err := os.Lstat(p); err == nil {
			existing = append(existing, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return existing, nil
}

// Run removes what Plan lists and returns it.
func Run(opts Options) ([]string, error) {
	paths, err := Plan(opts)
	if err != nil || opts.DryRun {
		return paths, err
	}
	for _, p := range paths {
		if err := remove(p); err != nil {
			return nil, fmt.Errorf("removing %s: %w", p, err)
		}
	}
	return paths, nil
}

// remove deletes p and everything below it. A directory that is a mount point (a
// separate disk for etcd, say) cannot go: it is emptied instead.
func remove(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, syscall.EBUSY) {
		return err
	}
	entries, rerr := os.ReadDir(p)
	if rerr != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
