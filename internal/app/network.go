package app

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/network"
)

func newNetworkCommand(e *env) *cobra.Command {
	opts := network.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Run the built-in pod-network agent (in the selfkube-network DaemonSet)",
		Long: `Run selfkube's pod-network agent on this node. It is started by the
selfkube-network DaemonSet, not by hand. It waits until the node has a pod CIDR
(allocated by kube-controller-manager), writes the bridge CNI configuration for it
(--cni-conf-dir), routes every other node's pod CIDR through that node's InternalIP
(routes marked with protocol 115, so routes of others are never touched), and
masquerades pod traffic that leaves the cluster. On exit it leaves all of that in place,
so pods keep their network while the agent restarts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, components, err := network.Components(opts, e.log)
			if err != nil {
				return err
			}
			return component.Run(cmd.Context(), run, components...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.NodeName, "node-name", "", "this node's name (default: $NODE_NAME)")
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.StringVar(&opts.CNIConfDir, "cni-conf-dir", opts.CNIConfDir, "the host's CNI configuration directory, as mounted")
	f.StringVar(&opts.ConflistName, "conflist-name", opts.ConflistName, "file name of the CNI configuration")
	f.StringSliceVar(&opts.ClusterCIDRs, "cluster-cidr", nil, "the cluster's pod subnet(s) (default: the pod CIDRs of all nodes)")
	f.DurationVar(&opts.ResyncPeriod, "resync-period", 30*time.Second, "how often routes and rules are checked again")
	f.BoolVar(&opts.NoMasquerade, "no-masquerade", false, "leave masquerading of pod egress to someone else")

	inst := network.DefaultInstallOptions()
	install := &cobra.Command{
		Use:   "install-cni",
		Short: "Copy the CNI plugins from the selfkube image to the host (the DaemonSet's init container)",
		Long: `Copy every CNI plugin binary of --from (the image's /opt/cni/bin) into --to (the host's
/opt/cni/bin, mounted). Each file is replaced atomically; identical files are left
alone, and files of other plugins in --to are never touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return network.InstallCNI(inst, e.log) },
	}
	install.Flags().StringVar(&inst.From, "from", inst.From, "directory of the plugins to install")
	install.Flags().StringVar(&inst.To, "to", inst.To, "the host's plugin directory, as mounted")
	cmd.AddCommand(install)
	return cmd
}
