// Package reset removes what selfkube put on a node, so the node can be used again.
package reset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
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
	// Confirm is asked, with the paths, before anything changes; nil proceeds. Its error
	// (the operator said no) stops the reset with nothing changed.
	Confirm func(paths []string) error
	// Out receives what the reset does, for the operator; nil is quiet.
	Out io.Writer
}

// Plan lists the paths a reset removes, in order. Static pods are only those selfkube
// recorded as its own.
func Plan(opts Options) ([]string, error) {
	l := opts.Layout
	// Active checkpoints first: the kubelet stops their pods.
	active, err := filepath.Glob(filepath.Join(l.ManifestsDir(), checkpoint.StaticPodName("*")+".yaml"))
	if err != nil {
		return nil, err
	}
	paths := active
	// What init and join wrote, by their records. A damaged record is no reason to keep
	// a node from being reset: the fixed paths below still go.
	for _, command := range []string{"init", "join"} {
		if rec, err := host.LoadRecord(l, command); err == nil {
			paths = append(paths, rec.Owned...)
		}
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

// Run resets the node: it lists what Plan found, asks Confirm, takes this node's member
// out of etcd (so that the other control-plane nodes keep their quorum without it), and
// removes the paths. It returns the paths (those it would remove, on a dry run).
func Run(ctx context.Context, opts Options) ([]string, error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	paths, err := Plan(opts)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		fmt.Fprintln(out, "nothing of selfkube's is on this node")
		return nil, nil
	}
	fmt.Fprintf(out, "reset removes:\n  %s\n", strings.Join(paths, "\n  "))
	if opts.DryRun {
		return paths, nil
	}
	if opts.Confirm != nil {
		if err := opts.Confirm(paths); err != nil {
			return nil, err
		}
	}
	switch member, err := LeaveEtcd(ctx, opts.Layout, out); {
	case errors.Is(err, ErrLastMember):
		fmt.Fprintf(out, "etcd member %s is the cluster's last: it is not removed from etcd\n", member)
	case err != nil:
		fmt.Fprintf(out, "WARNING: could not remove etcd member %s (%v): remove it from a remaining control-plane node "+
			"with `etcdctl member remove`, or the cluster counts it in its quorum\n", member, err)
	case member != "":
		fmt.Fprintf(out, "removed etcd member %s\n", member)
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
