package app

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/checkpoint/agent"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/host"
)

func newCheckpointerCommand(e *env) *cobra.Command {
	opts := agent.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "checkpointer",
		Short: "Keep the self-hosted control plane running through reboots and API outages (the selfkube-checkpointer DaemonSet)",
		Long: `Run the checkpointer of this node. The selfkube-checkpointer DaemonSet starts it on every
control-plane node; it is not run by hand.

For every kube-system pod bound to this node with the annotation selfkube.io/checkpoint
(the apiserver, controller manager and scheduler) whose controller is a DaemonSet or a
ReplicaSet, it keeps a checkpoint in
--checkpoint-dir: a static-pod copy of the newest Ready pod, with what needs the API
removed and its Secrets as files (root's, 0600). When the API is unreachable and the
pod does not run here, it activates the checkpoint (copies it to the kubelet's
static-pod directory, so the kubelet runs it without the API); when a self-hosted pod
is Ready again, it retires it. Checkpoints of pods gone from this node are removed
after a minute.

Other annotated pods (mirror pods, pods of other namespaces or controllers, names that
are not DNS labels) are ignored, each with one CheckpointIgnored Event.

With --etcd-pki-dir it also carries out what selfkube-controller's operator asks of this
node's etcd member in the ControlPlane's status: a snapshot before each change (kept in
--etcd-snapshot-dir, the newest 5), and a change of the member's extra flags (its
static pod rewritten; the operator changes one member at a time).

With --rotate-certificates it renews, every --certificate-check-interval, each
control-plane certificate within the cluster's renewal window (certificates.renewBefore
of selfkube-config): those in the apiserver's, controller manager's and scheduler's
Secrets (then it rolls the component, as 'selfkube certs renew' does) and this node's
(etcd's certificates and the kubeconfigs in /etc/kubernetes, from the CA keys on the
node). CertificatesRenewed Events and the ControlPlane's status.certificates say what
it renewed when, and when the next certificate is due.

What it did shows as Events on its pod (kubectl -n kube-system describe pod
selfkube-checkpointer-…), in its log, and as Prometheus metrics on
--metrics-bind-address (/metrics; /healthz for its probes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, components, err := agent.Components(opts, e.log)
			if err != nil {
				return err
			}
			return component.Run(cmd.Context(), run, components...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.NodeName, "node-name", "", "this node's name (default: $NODE_NAME)")
	f.StringVar(&opts.PodName, "pod-name", "", "the checkpointer's own pod, which Events are recorded on (none if empty)")
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.StringVar(&opts.CRISocket, "cri-socket", opts.CRISocket, "the container runtime's CRI endpoint")
	f.StringVar(&opts.CheckpointsDir, "checkpoint-dir", opts.CheckpointsDir, "where checkpoints are kept")
	f.StringVar(&opts.ManifestsDir, "manifests-dir", opts.ManifestsDir, "the kubelet's static-pod directory")
	f.StringVar(&opts.MetricsBindAddress, "metrics-bind-address", opts.MetricsBindAddress, "address of /metrics and /healthz")
	f.DurationVar(&opts.Interval, "interval", opts.Interval, "how often the API and the runtime are observed")
	f.StringVar(&opts.EtcdPKIDir, "etcd-pki-dir", "", "etcd's CA and healthcheck client certificate: when set, also carry out the "+
		"operator's etcd snapshots and member changes for this node (the control-plane operator's status.etcd)")
	f.StringVar(&opts.EtcdSnapshotDir, "etcd-snapshot-dir", opts.EtcdSnapshotDir, "where etcd snapshots are kept (0700; files 0600)")
	f.DurationVar(&opts.EtcdSnapshotInterval, "etcd-snapshot-interval", 0, "take a snapshot of the member this often (0: only before control-plane changes)")
	f.IntVar(&opts.EtcdSnapshotKeep, "etcd-snapshot-keep", 5, "how many scheduled snapshots to keep")
	f.BoolVar(&opts.RotateCertificates, "rotate-certificates", false, "renew the control-plane certificates and this node's within the cluster's renewal window "+
		"(needs /etc/kubernetes and /var/lib/selfkube of the node at the same paths)")
	f.DurationVar(&opts.CertificateCheckInterval, "certificate-check-interval", opts.CertificateCheckInterval, "how often the certificates are looked at")

	l := host.Default
	boot := agent.BootOptions{
		Kubeconfig: l.KubeletKubeconfig(), CRISocket: opts.CRISocket,
		CheckpointsDir: opts.CheckpointsDir, ManifestsDir: l.ManifestsDir(), RuntimeWait: 5 * time.Second,
	}
	bootCmd := &cobra.Command{
		Use:   "boot",
		Short: "Activate the checkpoints a rebooted node needs, before the kubelet starts (its unit's ExecStartPre)",
		Long: `Activate, before the kubelet starts, the checkpoints of this node whose pods cannot come
from the API: the API the kubelet uses (--kubeconfig) does not answer /readyz within 2 s,
and the container runtime does not run the pod. The kubelet then starts the control
plane from its static-pod directory at once, as on a static-pod node, and the
checkpointer hands back to the self-hosted pods when they are Ready.

The kubelet drop-in of selfkube runs it as ExecStartPre; it does nothing on a node
without checkpoints, and nothing when the API answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			activated, err := agent.Boot(cmd.Context(), boot, e.log)
			for _, n := range activated {
				fmt.Fprintf(e.streams.Out, "activated checkpoint %s\n", n)
			}
			return err
		},
	}
	bf := bootCmd.Flags()
	bf.StringVar(&boot.Kubeconfig, "kubeconfig", boot.Kubeconfig, "the kubelet's kubeconfig: the API to check")
	bf.StringVar(&boot.CRISocket, "cri-socket", boot.CRISocket, "the container runtime's CRI endpoint")
	bf.StringVar(&boot.CheckpointsDir, "checkpoint-dir", boot.CheckpointsDir, "where checkpoints are kept")
	bf.StringVar(&boot.ManifestsDir, "manifests-dir", boot.ManifestsDir, "the kubelet's static-pod directory")
	bf.DurationVar(&boot.RuntimeWait, "runtime-wait", boot.RuntimeWait, "how long to wait for the container runtime to answer")

	store := checkpoint.Store{Dir: opts.CheckpointsDir, ManifestsDir: l.ManifestsDir()}
	list := &cobra.Command{
		Use:   "list",
		Short: "List this node's checkpoints and whether each is active",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := store.Names()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CHECKPOINT\tCOMPLETE\tACTIVE")
			for _, n := range names {
				fmt.Fprintf(w, "%s\t%v\t%v\n", n, store.Present(n), store.Active(n))
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&store.Dir, "checkpoint-dir", store.Dir, "where checkpoints are kept")
	list.Flags().StringVar(&store.ManifestsDir, "manifests-dir", store.ManifestsDir, "the kubelet's static-pod directory")
	cmd.AddCommand(bootCmd, list)
	return cmd
}
