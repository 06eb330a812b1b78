package app

import (
	"strconv"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/steer"
)

func newSteerCommand(e *env) *cobra.Command {
	opts := steer.Options{}
	var healthAddr, nodeName, kubeconfig string
	cmd := &cobra.Command{
		Use:   "apiserver-steer",
		Short: "Give new API connections only to a ready apiserver (the selfkube-apiserver-steer DaemonSet)",
		Long: `Keep new connections away from an apiserver on this node until it can serve every
client. The selfkube-apiserver-steer DaemonSet runs it on every control-plane node; it
is not run by hand.

Every apiserver of a node (the old and the new pod of a roll-out) listens on the shared
port with SO_REUSEPORT; left to itself the kernel gives a starting apiserver
connections it answers with 403 (its authorizer has not seen RBAC yet) or not at all.
This agent attaches an eBPF program to the port's listeners on every address, asks each
apiserver for /readyz through its own listener, and lets the kernel choose only among
the ready ones; connections already open are never moved. Listeners on one address
(init's temporary apiserver, a checkpoint: the node's address) are left alone.

It also sets the readiness gate selfkube.io/apiserver-serving of each apiserver pod on
this node: True once that pod's own listener answers /readyz, False when it stops.
The kubelet's probe cannot tell (it reaches whichever listener the kernel picks), so
without the gate a roll-out would retire the old apiserver as soon as the new one
listened. Changes show as Events on the apiserver pods.

It needs the host's PID and network namespaces, CAP_BPF and CAP_SYS_PTRACE, and a
seccomp profile that allows bpf() and pidfd_getfd(). It changes no file on the host; its
program stays attached to the port's listeners until they close. See
docs/no-api-gap.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Log = e.log
			if err := opts.Validate(); err != nil {
				return err
			}
			node, err := component.NodeName(nodeName)
			if err != nil {
				return err
			}
			client, err := component.Client(kubeconfig, "selfkube-apiserver-steer")
			if err != nil {
				return err
			}
			events := &component.Events{Client: client, Source: corev1.EventSource{Component: "selfkube-apiserver-steer", Host: node}}
			gate := steer.NewGate(client, metav1.NamespaceSystem, node, events.Recorder, e.log)
			opts.Gate = gate
			return component.Run(cmd.Context(), component.Options{Address: healthAddr, Log: e.log}, events, gate, steer.NewAgent(opts))
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodeName, "node-name", "", "this node's name (default: $NODE_NAME)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.IntVar(&opts.Port, "port", steer.DefaultPort, "the apiservers' shared port")
	f.Uint16Var(&opts.ProbeBase, "probe-base", steer.DefaultProbeBase, "first of the 16 local source ports that probe one listener each")
	f.StringVar(&opts.CAFile, "ca-file", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "the cluster CA, to verify the apiservers the probes reach")
	f.StringVar(&opts.Proc, "proc", steer.DefaultProc, "the host's /proc (the pod shares the host's PID namespace)")
	f.DurationVar(&opts.Interval, "interval", steer.DefaultInterval, "how often listeners are found and probed")
	f.DurationVar(&opts.ProbeTimeout, "probe-timeout", steer.DefaultProbeTimeout, "limit of one /readyz probe")
	f.StringVar(&healthAddr, "health-bind-address", "127.0.0.1:"+strconv.Itoa(steer.DefaultHealthPort), "address of /healthz and /readyz")
	return cmd
}
