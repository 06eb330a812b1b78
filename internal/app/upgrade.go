package app

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/upgrade"
)

func newUpgradeCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Change the self-hosted control plane through its ControlPlane resource",
		Long: `Change the self-hosted control plane through its ControlPlane resource
(kubectl get controlplane cluster): selfkube-controller's operator rolls every change out
one component at a time and rolls back a component that fails (docs/controlplane.md).
It talks to the API with an administrator's kubeconfig and writes nothing on this host.`,
	}
	var (
		kubeconfigPath string
		sets, unsets   []string
		opts           upgrade.Options
	)
	apply := &cobra.Command{
		Use:   "apply --set FIELD=VALUE… [--unset FIELD…] [--dry-run]",
		Short: "Change fields of the ControlPlane's spec and follow the roll-out",
		Long: `Change fields of the ControlPlane resource's spec (kubectl get controlplane cluster -o yaml)
and follow selfkube-controller's roll-out: one line per component with ✓ or ✗ and its
duration. It exits 0 once every component runs the change, and non-zero when the
operator rolled it back (saying which component failed and why) or the timeout passed.
It changes only the ControlPlane resource in the cluster, nothing on this host.

FIELD is a path below spec:
  kubernetesVersion, imageRepository
  rollout.timeoutSeconds, rollout.soakSeconds
  apiServer|controllerManager|scheduler .image
                                        .extraArgs.FLAG        (without the dashes)
                                        .featureGates.GATE     (true or false)
                                        .resources.requests.RESOURCE, .resources.limits.RESOURCE

A change that is not valid changes nothing. The same change can be made with kubectl:
  kubectl patch controlplane cluster --type merge -p '{"spec":{"apiServer":{"extraArgs":{"v":"2"}}}}'`,
		Example: `  selfkube upgrade apply --set apiServer.extraArgs.v=2 --dry-run
  selfkube upgrade apply --set apiServer.extraArgs.max-requests-inflight=800
  selfkube upgrade apply --unset apiServer.extraArgs.v --set scheduler.featureGates.SchedulerQueueingHints=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Changes = nil
			for _, s := range sets {
				c, err := upgrade.ParseSet(s)
				if err != nil {
					return err
				}
				opts.Changes = append(opts.Changes, c)
			}
			for _, u := range unsets {
				opts.Changes = append(opts.Changes, upgrade.Change{Path: u, Unset: true})
			}
			if len(opts.Changes) == 0 {
				return fmt.Errorf("nothing to change: give --set FIELD=VALUE or --unset FIELD (see --help)")
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
			if err != nil {
				return fmt.Errorf("loading %s: %w (pass --kubeconfig)", kubeconfigPath, err)
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return err
			}
			_, err = upgrade.Apply(cmd.Context(), dyn, opts, e.status)
			return err
		},
	}
	f := apply.Flags()
	f.StringVar(&kubeconfigPath, "kubeconfig", host.Default.AdminKubeconfig(), "kubeconfig of a cluster administrator")
	f.StringArrayVar(&sets, "set", nil, "FIELD=VALUE to set (repeatable)")
	f.StringArrayVar(&unsets, "unset", nil, "FIELD to remove (repeatable)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "show the change, change nothing")
	f.DurationVar(&opts.Timeout, "timeout", 15*time.Minute, "how long to follow the roll-out")
	cmd.AddCommand(apply)
	return cmd
}
