package app

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/recovery"
)

func newRecoverCommand(e *env) *cobra.Command {
	o := recovery.Options{Layout: host.Default}
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Bring a lost control plane back on this control-plane node",
		Long: `Bring the control plane back on this control-plane node (root), from what is left here.

  --from-snapshot FILE   etcd's data is gone or corrupt. etcd is stopped, its data
                         directory moved aside (never deleted without --force), FILE
                         restored with etcd's own restore code (one member, a new
                         cluster ID, revisions bumped and compacted so that every client
                         lists again) and etcd started again.
  --force-new-cluster    etcd lost its quorum for good (most control-plane nodes gone).
                         The member's data is copied aside and it restarts once with
                         --force-new-cluster: the only member, with all its data.
  (neither)              etcd is fine but the control plane is not: its DaemonSet,
                         Deployments or Secrets were deleted, no apiserver runs.

Then, in every case: an apiserver must answer on this node (if none does within 30 s,
the checkpoints on disk are activated and stand in); each control-plane Secret that is
missing is created again from this node's checkpoint of its component
(/etc/kubernetes/checkpoints/<component>/volumes/secrets); each control-plane workload
that is missing is created again from the ControlPlane resource and the cluster
configuration stored in etcd; and recover waits until the self-hosted apiserver,
controller manager and scheduler are Ready and no checkpoint stands in.

After --from-snapshot or --force-new-cluster, etcd has one member, this one, and the
other control-plane nodes are lost to the cluster: recover cordons them, deletes their
controller-manager, scheduler and other kube-system Deployment pods at once (the data
still shows them Ready), and if no controller-manager or scheduler replica runs here or
on a live node, starts one here from its Deployment and Secret until the Deployment's
own pod is Ready here. Every other control-plane node must join again: on it, selfkube reset --force --remove-etcd-data,
then the join command of selfkube token create --control-plane --print-join-command run
here. Workers need nothing.

Every step prints ✓ or ✗ with its duration. Run again after an interruption, recover
finishes what the earlier run began (it records its progress in
/var/lib/selfkube/recover.json).`,
		Example: `  # what would happen
  selfkube recover --from-snapshot /var/lib/selfkube/etcd-snapshots/etcd-cp1-….db --dry-run
  # etcd's data was lost
  selfkube recover --from-snapshot /root/cluster.db
  # kubectl -n kube-system delete ds kube-apiserver happened
  selfkube recover
  # two of three control-plane nodes are gone for good
  selfkube recover --force-new-cluster`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Snapshot != "" && o.ForceNewCluster {
				return fmt.Errorf("--from-snapshot and --force-new-cluster exclude each other: a restored snapshot is a cluster of one member already")
			}
			o.Status, o.Log = e.status, e.log
			d, err := recovery.Prepare(o)
			if err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintf(e.streams.Out, "recover (%s) would, on this node (etcd member %s):\n", o.Mode(), d.Member.Name)
				for i, line := range d.Plan() {
					fmt.Fprintf(e.streams.Out, "  %d. %s\n", i+1, line)
				}
				fmt.Fprintln(e.streams.Out, "nothing was changed (--dry-run)")
				return nil
			}
			start := time.Now()
			if err := recovery.Run(cmd.Context(), d); err != nil {
				return err
			}
			fmt.Fprintf(e.streams.Err, "\nThe control plane is back (%s).\n", time.Since(start).Round(100*time.Millisecond))
			for _, line := range d.NextSteps(cmd.Context()) {
				fmt.Fprintln(e.streams.Err, line)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Snapshot, "from-snapshot", "", "restore this etcd snapshot (selfkube etcd snapshot save, or a scheduled one)")
	f.BoolVar(&o.ForceNewCluster, "force-new-cluster", false, "make this node's etcd member the only member of its cluster, keeping its data")
	f.BoolVar(&o.Force, "force", false, "delete etcd's old data directory instead of moving it aside")
	f.BoolVar(&dryRun, "dry-run", false, "say what would be done and change nothing")
	f.StringVar(&o.Kubeconfig, "kubeconfig", host.Default.AdminKubeconfig(), "kubeconfig of a cluster administrator")
	f.DurationVar(&o.EtcdTimeout, "etcd-timeout", 2*time.Minute, "how long to wait for etcd to stop and to serve")
	f.DurationVar(&o.APITimeout, "api-timeout", 3*time.Minute, "how long to wait for an apiserver")
	f.DurationVar(&o.SelfHostedTimeout, "timeout", 5*time.Minute, "how long to wait for the self-hosted control plane")
	return cmd
}
