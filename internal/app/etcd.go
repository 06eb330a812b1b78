package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	corev1 "k8s.io/api/core/v1"

	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
)

func newEtcdCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Work with this control-plane node's etcd member",
	}
	snapshot := &cobra.Command{
		Use:   "snapshot",
		Short: "Save and inspect etcd snapshots (the cluster's whole state in one file)",
		Long: `A snapshot holds everything the cluster stores: every object, the control plane's
Secrets (encrypted as in etcd: keep the asset directory's encryption-config.yaml apart
from it) and the ControlPlane resource. selfkube recover --from-snapshot FILE restores it.

Besides the ones you save, the node agent of every control-plane node saves one on a
schedule (etcd.local.snapshots in the cluster configuration: every 12h, the newest 5
kept) and one before each control-plane change, into /var/lib/selfkube/etcd-snapshots;
the newest of each node are named in the ControlPlane's status:
  kubectl get controlplane cluster -o jsonpath='{.status.etcd.scheduled}'
  kubectl get controlplane cluster -o jsonpath='{.status.etcd.snapshots}'`,
	}
	snapshot.AddCommand(newSnapshotSaveCommand(e), newSnapshotStatusCommand(e))
	cmd.AddCommand(snapshot)
	return cmd
}

func newSnapshotSaveCommand(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [FILE]",
		Short: "Save a snapshot of this node's etcd member to FILE",
		Long: `Save a snapshot of this node's etcd member (run as root on a control-plane node): it
connects with the node's etcd client certificate, writes FILE (0600; its directory is
created 0700) and checks it (the database's consistency and its SHA-256), then prints the
member, the revision, the number of keys and the size. FILE defaults to
/var/lib/selfkube/etcd-snapshots/manual-<member>-<time>.db, which scheduled snapshots
never prune. An existing FILE is refused.`,
		Example: `  selfkube etcd snapshot save /root/before-upgrade.db
  selfkube etcd snapshot save -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pod, err := localEtcdPod(host.Default)
			if err != nil {
				return err
			}
			m, err := manifests.EtcdMemberOf(pod)
			if err != nil {
				return err
			}
			path := filepath.Join(manifests.EtcdSnapshotDir, fmt.Sprintf("manual-%s-%s.db", m.Name, time.Now().UTC().Format("20060102T150405Z")))
			if len(args) == 1 {
				path = args[0]
			}
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("%s exists: give another file name (nothing was written)", path)
			}
			// Missing directories are made 0700; an existing one is left as it is (the
			// file itself is 0600).
			if err := os.MkdirAll(filepath.Dir(path), host.PrivateDirMode); err != nil {
				return err
			}
			step := e.status.Start("snapshot of etcd member " + m.Name + " (" + m.ClientURL + ")")
			info, err := func() (etcd.SnapshotInfo, error) {
				c, err := etcd.Dial([]string{m.ClientURL}, filepath.Join(host.Default.PKIDir(), "etcd"))
				if err != nil {
					return etcd.SnapshotInfo{}, err
				}
				defer c.Close()
				if _, _, err := c.Snapshot(cmd.Context(), path); err != nil {
					return etcd.SnapshotInfo{}, err
				}
				return etcd.SnapshotStatus(path)
			}()
			step.Done(&err)
			if err != nil {
				return err
			}
			return printSnapshot(e, output, path, m.Name, info)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: one line)")
	return cmd
}

func newSnapshotStatusCommand(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status FILE",
		Short: "Check a snapshot file and say what it holds",
		Long: `Check FILE as a restore would (the database's consistency; the SHA-256 at its end,
which a snapshot saved through etcd's API carries) and print its revision, number of
keys, size and hash. A damaged file is an error: do not restore it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := etcd.SnapshotStatus(args[0])
			if err != nil {
				return err
			}
			return printSnapshot(e, output, args[0], "", info)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: one line)")
	return cmd
}

func printSnapshot(e *env, output, path, member string, info etcd.SnapshotInfo) error {
	switch output {
	case "json":
		out := struct {
			Path   string `json:"path"`
			Member string `json:"member,omitempty"`
			etcd.SnapshotInfo
		}{path, member, info}
		enc := json.NewEncoder(e.streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "":
		checksum := "no checksum (a member's database file)"
		if info.Checksum {
			checksum = "checksum ok"
		}
		fmt.Fprintf(e.streams.Out, "%s: revision %d, %d keys, %d bytes, hash %08x, storage version %s, %s\n",
			path, info.Revision, info.Keys, info.Size, info.Hash, orDash(info.StorageVersion), checksum)
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o json or leave it out", output)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// localEtcdPod reads this node's etcd static pod.
func localEtcdPod(l host.Layout) (*corev1.Pod, error) {
	file := filepath.Join(l.ManifestsDir(), manifests.EtcdStaticPod)
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("this node runs no etcd member (%s is missing): run this on a control-plane node with a local etcd", file)
	}
	if err != nil {
		return nil, err
	}
	var p corev1.Pod
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return &p, nil
}
