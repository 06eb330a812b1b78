package app

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
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
in version-skew order (etcd, the apiserver, then its clients together) and rolls back a
component that fails (docs/controlplane.md).
upgrade plan shows what a change would do and what blocks it, changing nothing;
upgrade apply makes it. Both talk to the API with an administrator's kubeconfig and
write nothing on this host.`,
	}
	var (
		kubeconfigPath string
		sets, unsets   []string
		opts           upgrade.Options
	)
	apply := &cobra.Command{
		Use:   "apply [VERSION] [--set FIELD=VALUE…] [--unset FIELD…] [--dry-run]",
		Short: "Upgrade to a Kubernetes version, or change fields of the ControlPlane's spec, and follow the roll-out",
		Long: `Upgrade the control plane to Kubernetes VERSION (the same as --set kubernetesVersion=VERSION),
or change other fields of the ControlPlane resource's spec (kubectl get controlplane cluster -o yaml),
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
  etcd.extraArgs.FLAG                   (etcd's members change one at a time; the flags
                                         that make a member what it is are refused)
  kubeProxy.image, coreDNS.image        (the add-ons, rolled out after the control plane;
                                         kube-proxy follows kubernetesVersion otherwise)

Before anything changes, each control-plane node's agent takes a snapshot of etcd
(/var/lib/selfkube/etcd-snapshots, the newest 5; named in the status).

A version upgrade goes in the version-skew order: etcd member by member (when
etcd.version changes too), kube-apiserver node by node, then the controller manager and
scheduler, kube-proxy and CoreDNS; each is health-gated and rolled back on failure, which
leaves every component on the old version. Run selfkube upgrade plan VERSION first: it
says whether the images are on the nodes, whether every kubelet is within the skew, and
which flags the new version removes. Kubelets follow afterwards, one node at a time:
selfkube upgrade node on each node.

A change that is not valid changes nothing. The same change can be made with kubectl:
  kubectl patch controlplane cluster --type merge -p '{"spec":{"apiServer":{"extraArgs":{"v":"2"}}}}'`,
		Example: `  selfkube upgrade apply v1.36.3
  selfkube upgrade apply v1.36.3 --set etcd.version=v3.6.16
  selfkube upgrade apply --set apiServer.extraArgs.v=2 --dry-run
  selfkube upgrade apply --set apiServer.extraArgs.max-requests-inflight=800
  selfkube upgrade apply --unset apiServer.extraArgs.v --set scheduler.featureGates.SchedulerQueueingHints=false`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Changes, err = parseChanges(args, sets, unsets); err != nil {
				return err
			}
			if len(opts.Changes) == 0 {
				return fmt.Errorf("nothing to change: give a VERSION, --set FIELD=VALUE or --unset FIELD (see --help)")
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

	var output string
	plan := &cobra.Command{
		Use:   "plan [VERSION] [--set FIELD=VALUE…] [--unset FIELD…] [-o text|json]",
		Short: "Show what a change of the ControlPlane's spec would do and what blocks it, changing nothing",
		Long: `Show what a change of the ControlPlane resource's spec would do, and whether anything
stands in its way, without making it. It reads the ControlPlane, the cluster configuration,
the nodes and the selfkube-controller Deployment, and writes nothing: not in the cluster,
not on this host.

With --set and --unset (the same FIELDs as upgrade apply: see selfkube upgrade apply --help)
it plans that change: the fields it changes, the image each component runs and would run,
whether the component's flags, feature gates or resources change, and the checks below.
Without them it plans the spec as it is: what of it has not rolled out yet, and what runs.

It lists the versions the control plane can go to without pulling an image: each
Kubernetes version, other than the running one, whose kube-apiserver,
kube-controller-manager and kube-scheduler images (from the planned imageRepository)
every control-plane node has and whose kube-proxy image every node has, as the nodes'
status lists them; ✓ when the version and kubelets checks below pass for it, ✗ and why
not. Then the etcd releases whose image every control-plane node has. A kubelet lists
only its 50 largest images by default (nodeStatusMaxImages), so a version may be
missing from the list although its images are there.

Each check is one line: ✓ passes, ! is worth knowing but does not block, ✗ blocks.
  spec           the changed spec is valid (the rules upgrade apply and the operator use)
  version        the control plane goes up one minor version at a time, never down a
                 minor, never to another major; patch releases go either way
  kubelets       no node's kubelet is newer than the new kube-apiserver nor more than
                 three minor versions older (Kubernetes' version-skew policy): upgrade
                 kubelets that are too old first
  removed flags  no extraArgs of kube-apiserver, kube-controller-manager or kube-scheduler
                 sets a flag that a newer minor version, up to the target, removed (the
                 component would not start): --unset it with the change
  images         with a new kubernetesVersion: which node lacks which of its images (!,
                 the kubelet pulls them if it can reach the registry)
  roll-out       what the operator is doing: a roll-out in progress (the change replaces
                 its target), a spec it has not seen yet, Degraded, or the control plane
                 held at the last-known-good generation after a rollback
  operator       a replica of kube-system/selfkube-controller is ready to roll the change
                 out

It exits 0 when nothing blocks, and non-zero, saying what blocks, when a check does: a
script can run plan before apply. -o json prints the plan for scripts (changes,
components, available with version, allowed and reason, availableEtcd, checks with
result pass, warn or block, and blocked) on stdout.`,
		Example: `  selfkube upgrade plan
  selfkube upgrade plan v1.36.3
  selfkube upgrade plan --set kubernetesVersion=v1.37.0
  selfkube upgrade plan --set apiServer.extraArgs.v=2 --unset scheduler.featureGates.SchedulerQueueingHints
  selfkube upgrade plan --set kubernetesVersion=v1.37.0 -o json | jq -r '.checks[] | select(.result != "pass")'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("unknown output format %q: use -o text or -o json", output)
			}
			changes, err := parseChanges(args, sets, unsets)
			if err != nil {
				return err
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
			if err != nil {
				return fmt.Errorf("loading %s: %w (pass --kubeconfig)", kubeconfigPath, err)
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return err
			}
			obs, err := upgrade.Read(cmd.Context(), client, dyn)
			if err != nil {
				return err
			}
			p, err := upgrade.PlanFor(obs, changes)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.streams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(p); err != nil {
					return err
				}
			} else if _, err := io.WriteString(e.streams.Out, p.Text()); err != nil {
				return err
			}
			return p.Err()
		},
	}
	f = plan.Flags()
	f.StringVar(&kubeconfigPath, "kubeconfig", host.Default.AdminKubeconfig(), "kubeconfig of a cluster administrator")
	f.StringArrayVar(&sets, "set", nil, "FIELD=VALUE to plan setting (repeatable)")
	f.StringArrayVar(&unsets, "unset", nil, "FIELD to plan removing (repeatable)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(apply, plan, newUpgradeNodeCommand(e))
	return cmd
}

func newUpgradeNodeCommand(e *env) *cobra.Command {
	var (
		kubeconfigPath string
		opts           upgrade.NodeOptions
	)
	cmd := &cobra.Command{
		Use:   "node --kubelet-binary FILE [--drain] [--dry-run]",
		Short: "Upgrade this node's kubelet, once the control plane runs its version",
		Long: `Upgrade the kubelet of this node, the part of an upgrade that lives on the host: after
selfkube upgrade apply VERSION has rolled the control plane out, run it on every node, one
node at a time, with the new kubelet binary (from your distribution's package or the
Kubernetes release). It:

  1. refuses to run before the control plane runs that version or a newer one (a kubelet
     may never be newer than the apiserver); with an administrator's kubeconfig it also
     waits for the ControlPlane's roll-out to be done on every control-plane node;
  2. with --drain, cordons the node and evicts its pods (not DaemonSets' nor static pods;
     PodDisruptionBudgets hold); needs an administrator's kubeconfig;
  3. installs the binary at --kubelet-path (written beside it and renamed over it), keeping
     the old one as <path>.previous;
  4. restarts the kubelet (--restart-command) and waits for the node to report the new
     version, Ready; then uncordons it when it drained it.

The self-hosted pods keep running while the kubelet restarts: it finds its containers
again. Run again, it does nothing once the node runs that kubelet. To go back, run it with
--kubelet-binary <path>.previous.

It talks to the API with --kubeconfig: the administrator's when this node has it, else the
kubelet's own (/etc/kubernetes/kubelet.conf), which can read this node and /version.`,
		Example: `  selfkube upgrade node --kubelet-binary /tmp/kubernetes/node/bin/kubelet --dry-run
  selfkube upgrade node --kubelet-binary /tmp/kubernetes/node/bin/kubelet --drain`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.KubeletBinary == "" {
				return fmt.Errorf("--kubelet-binary is required: the new kubelet to install")
			}
			if opts.Node == "" {
				opts.Node = e.host().Hostname
			}
			if kubeconfigPath == "" {
				kubeconfigPath = host.Default.KubeletKubeconfig()
				if _, err := os.Stat(host.Default.AdminKubeconfig()); err == nil {
					kubeconfigPath = host.Default.AdminKubeconfig()
				}
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
			if err != nil {
				return fmt.Errorf("loading %s: %w (pass --kubeconfig)", kubeconfigPath, err)
			}
			cfg.Timeout = 10 * time.Second
			var c upgrade.NodeClients
			if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
				return err
			}
			if kubeconfigPath != host.Default.KubeletKubeconfig() {
				if c.Dyn, err = dynamic.NewForConfig(cfg); err != nil {
					return err
				}
			}
			opts.Out = e.streams.Err
			return upgrade.Node(cmd.Context(), c, opts, e.status)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.KubeletBinary, "kubelet-binary", "", "the new kubelet binary (its --version is the version upgraded to)")
	f.StringVar(&opts.KubeletPath, "kubelet-path", "/usr/bin/kubelet", "where the kubelet that the kubelet unit runs is installed")
	f.StringVar(&opts.RestartCommand, "restart-command", "systemctl restart kubelet", "shell command that restarts the kubelet")
	f.StringVar(&opts.Node, "node-name", "", "this node's name (default: the host name)")
	f.StringVar(&kubeconfigPath, "kubeconfig", "", "kubeconfig to talk to the API with (default: admin.conf when present, else the kubelet's)")
	f.BoolVar(&opts.Drain, "drain", false, "cordon the node and evict its pods first, uncordon it after")
	f.BoolVar(&opts.DryRun, "dry-run", false, "check and say what would be done, change nothing")
	f.DurationVar(&opts.Timeout, "timeout", 5*time.Minute, "how long the drain and the node's return may take")
	return cmd
}

// parseChanges reads the VERSION argument (kubernetesVersion), --set and --unset.
func parseChanges(args, sets, unsets []string) ([]upgrade.Change, error) {
	var changes []upgrade.Change
	for _, v := range args {
		c, err := upgrade.VersionChange(v)
		if err != nil {
			return nil, err
		}
		changes = append(changes, c)
	}
	for _, s := range sets {
		c, err := upgrade.ParseSet(s)
		if err != nil {
			return nil, err
		}
		changes = append(changes, c)
	}
	for _, u := range unsets {
		changes = append(changes, upgrade.Change{Path: u, Unset: true})
	}
	return changes, nil
}
