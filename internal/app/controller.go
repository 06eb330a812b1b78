package app

import (
	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/approver"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/controller"
)

func newControllerCommand(e *env) *cobra.Command {
	opts := controller.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run selfkube's in-cluster controllers (the " + controller.Name + " Deployment)",
		Long: `Run selfkube's in-cluster controllers. The ` + controller.Name + ` Deployment starts it on
control-plane nodes; it is not run by hand. Its replicas elect a leader with the Lease
kube-system/` + controller.Name + `; only the leader acts. It writes nothing on the host.

Controllers:

  bootstrap CSR approver   Approves the kubelet client certificate a joining node asks for
                           with a bootstrap token, only for a node name that no Node has and
                           that no token was given since a Node of that name was last
                           deleted (recorded in the ConfigMap
                           ` + approver.LedgerNamespace + `/` + approver.LedgerName + `). It denies every other CSR made with a
                           bootstrap token, with the reason as the CSR's condition and as an
                           Event (kubectl describe csr NAME). A worker's join token therefore
                           never yields an existing node's identity, above all not a
                           control-plane node's, whose kubelet may read the control plane's
                           Secrets. Renewals of a node's own certificate are approved by
                           Kubernetes as usual.

  control-plane operator   Rolls the ControlPlane resource (kubectl get controlplane
                           cluster) out to the self-hosted control plane: one component at
                           a time (kube-apiserver, kube-controller-manager,
                           kube-scheduler), each judged by its health gate (its pods
                           updated and Ready, every node's apiserver answering an
                           authorized request, then a soak). A component that fails (a
                           crash loop, an image that cannot be pulled, not healthy in
                           time) is rolled back to the last-known-good spec, said in the
                           resource's RolledBack condition and in a Warning Event
                           (kubectl describe controlplane cluster); nothing more changes
                           until the spec does. A workload edited around the resource is
                           left alone while healthy and put back once it fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, components, err := controller.Components(opts, e.log)
			if err != nil {
				return err
			}
			return component.Run(cmd.Context(), run, components...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.StringVar(&opts.Identity, "identity", "", "leader-election identity (default: $POD_NAME, then the hostname)")
	f.StringVar(&opts.HealthBindAddress, "health-bind-address", opts.HealthBindAddress, "address of /healthz")
	return cmd
}
