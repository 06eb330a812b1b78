package app

import (
	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/steer"
)

func newSteerCommand(e *env) *cobra.Command {
	opts := steer.Options{}
	var healthAddr string
	cmd := &cobra.Command{
		Use:   "apiserver-steer",
		Short: "Give new API connections only to a ready apiserver (in the selfkube-checkpointer pod)",
		Long: `Keep new connections away from an apiserver on this node until it can serve every
client. Every apiserver of a node (the old and the new pod of a roll-out, a checkpoint)
listens on the shared port with SO_REUSEPORT; left to itself the kernel gives a starting
apiserver connections it answers with 403 (its authorizer has not seen RBAC yet) or not
at all. This agent attaches an eBPF program to the port's listeners, asks each
apiserver for /readyz through its own listener, and lets the kernel choose only among
the ready ones; connections already open are never moved. See docs/no-api-gap.md.

It is not deployed yet: a pod's readiness is still decided by the kubelet through the
shared port, which steering alone cannot make right (docs/no-api-gap.md says what comes
next). It is meant to run once per control-plane node, in the host's PID and network
namespaces, with CAP_BPF and CAP_SYS_PTRACE and a seccomp profile that allows bpf() and
pidfd_getfd(). It changes no file on the host; its program stays attached to the port's
listeners until they close.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Log = e.log
			if err := opts.Validate(); err != nil {
				return err
			}
			return component.Run(cmd.Context(), component.Options{Address: healthAddr, Log: e.log}, steer.NewAgent(opts))
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Port, "port", steer.DefaultPort, "the apiservers' shared port")
	f.Uint16Var(&opts.ProbeBase, "probe-base", steer.DefaultProbeBase, "first of the 16 local source ports that probe one listener each")
	f.StringVar(&opts.CAFile, "ca-file", "/etc/kubernetes/pki/ca.crt", "the cluster CA, to verify the apiservers the probes reach")
	f.StringVar(&opts.Proc, "proc", steer.DefaultProc, "the host's /proc (the pod shares the host's PID namespace)")
	f.DurationVar(&opts.Interval, "interval", steer.DefaultInterval, "how often listeners are found and probed")
	f.DurationVar(&opts.ProbeTimeout, "probe-timeout", steer.DefaultProbeTimeout, "limit of one /readyz probe")
	f.StringVar(&healthAddr, "health-bind-address", "127.0.0.1:10276", "address of /healthz and /readyz")
	return cmd
}
