package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/initcluster"
	"github.com/selfkube/selfkube/internal/workflow"
)

type initFlags struct {
	config          string
	skipPhases      []string
	ignorePreflight []string
	handoverTimeout time.Duration
	apiTimeout      time.Duration
	tokenTTL        time.Duration
}

func (f *initFlags) register(cmd *cobra.Command, withSkip bool) {
	cmd.Flags().StringVar(&f.config, "config", "", "configuration file (selfkube.io/v1alpha1); empty: all defaults for this host")
	if withSkip {
		cmd.Flags().StringSliceVar(&f.skipPhases, "skip-phases", nil,
			"phases not to run: "+strings.Join(initcluster.Workflow().Names(), ", "))
	}
	cmd.Flags().StringSliceVar(&f.ignorePreflight, "ignore-preflight-errors", nil,
		"preflight checks whose failure is only a warning, e.g. Port-6443,Swap (all: every check)")
	cmd.Flags().DurationVar(&f.handoverTimeout, "handover-timeout", 5*time.Minute,
		"how long to wait for the self-hosted control plane before giving up (the temporary one keeps running)")
	cmd.Flags().DurationVar(&f.apiTimeout, "timeout", 4*time.Minute, "how long to wait for the kubelet, the API and the node")
	cmd.Flags().DurationVar(&f.tokenTTL, "token-ttl", 24*time.Hour, "lifetime of the bootstrap token in the join command")
}

func (e *env) runInit(cmd *cobra.Command, f *initFlags, only string) error {
	cfg, err := config.LoadFile(f.config, e.host())
	if err != nil {
		return err
	}
	d, err := initcluster.Run(cmd.Context(), cfg, initcluster.Options{
		Layout:                host.Default,
		HandoverTimeout:       f.handoverTimeout,
		APITimeout:            f.apiTimeout,
		IgnorePreflightErrors: f.ignorePreflight,
		TokenTTL:              f.tokenTTL,
		Status:                e.status,
		Log:                   e.log,
	}, workflow.Options{Skip: f.skipPhases, Only: only})
	if errors.Is(err, initcluster.ErrAlreadyInitialized) {
		fmt.Fprintf(e.streams.Err, "%v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	if jc := d.JoinCommand(); jc != "" {
		fmt.Fprintf(e.streams.Err, "\nThe control plane is self-hosted. Use it with:\n  export KUBECONFIG=%s\n  kubectl -n kube-system get pods\n"+
			"Join more nodes with the command below (it holds a secret token):\n", host.Default.AdminKubeconfig())
		fmt.Fprintln(e.streams.Out, jc)
	}
	return nil
}

func newInitCommand(e *env) *cobra.Command {
	f := &initFlags{}
	cmd := &cobra.Command{
		Use:   "init [--config FILE]",
		Short: "Make this host the first control-plane node of a self-hosted cluster",
		Long: `Turn this host into the first control-plane node of a self-hosted cluster.

The host needs a kubelet run by its service manager (deploy/systemd has a unit), a
container runtime, and the component images. init then, in order:
  ` + strings.Join(initcluster.Workflow().Names(), " → ") + `

It writes certificates, kubeconfigs and assets to /var/lib/selfkube/assets, the kubelet's
configuration to /var/lib/kubelet, credentials to /etc/kubernetes, and static pods for
etcd and a temporary control plane to /etc/kubernetes/manifests. Through the temporary
API it applies the self-hosted control plane (DaemonSets, Deployments, Secrets). Both
apiservers share port 6443 (--permit-port-sharing). Only when the self-hosted apiserver
itself answers /readyz and the scheduler, controller-manager and node are Ready does init
remove the temporary static pods (only the files it wrote). A timeout leaves the
temporary control plane running and says which condition never held.

Run it again after a failure: every phase reuses what exists. The node counts as
initialized only once a run got through every phase it ran (--skip-phases leaves
phases out by choice; init phase NAME runs one phase and never marks the node
initialized). On an initialized node init changes nothing, while init phase NAME still
runs that phase. The join command for further nodes is printed on stdout.`,
		Example: `  selfkube init --config cluster.yaml
  selfkube init --config cluster.yaml --ignore-preflight-errors=Swap
  selfkube init phase certs --config cluster.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.runInit(cmd, f, "") },
	}
	f.register(cmd, true)
	phase := &cobra.Command{Use: "phase", Short: "Run one phase of init on its own"}
	for _, p := range initcluster.Workflow().Phases {
		pf := &initFlags{}
		name := p.Name
		sub := &cobra.Command{
			Use:   name,
			Short: p.Short,
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return e.runInit(cmd, pf, name) },
		}
		pf.register(sub, false)
		phase.AddCommand(sub)
	}
	cmd.AddCommand(phase)
	return cmd
}
