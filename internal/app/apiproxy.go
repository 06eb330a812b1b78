package app

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/apiproxy"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/manifests"
)

func newAPIProxyCommand(e *env) *cobra.Command {
	opts := apiproxy.Options{
		Listen:           "127.0.0.1:6444",
		ProbeInterval:    time.Second,
		DiscoverInterval: 10 * time.Second,
	}
	cmd := &cobra.Command{
		Use:   "api-proxy",
		Short: "Run the node-local API load balancer (the selfkube-api-proxy static pod, the kube-proxy sidecar)",
		Long: `Run the node-local API load balancer of this node. selfkube join writes it as the static
pod selfkube-api-proxy, and points the kubelet at it (` + manifests.APIProxyServer() + `); every
kube-proxy pod runs one as a sidecar for kube-proxy (` + manifests.ProxyAPIProxyServer() + `). It is
not run by hand.

Each connection goes, TLS untouched, to an apiserver that answered /readyz within the last
--probe-interval: when a control-plane node dies, the node's kubelet keeps its API. The
apiservers are the --backend addresses, those it last knew (--state-file), and the
endpoints of the kubernetes Service, which it reads every --discover-interval with the
kubelet's or kube-proxy's credentials (--kubeconfig). On the host it listens on --listen
and writes only --state-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, components, err := apiproxy.Components(opts, e.log)
			if err != nil {
				return err
			}
			return component.Run(cmd.Context(), run, components...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", opts.Listen, "address to listen on")
	f.StringSliceVar(&opts.Backends, "backend", nil, "apiserver host:port to start with (repeatable)")
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig to read the apiserver endpoints with (none: no discovery)")
	f.StringVar(&opts.StateFile, "state-file", "", "file that remembers the apiservers last known")
	f.DurationVar(&opts.ProbeInterval, "probe-interval", opts.ProbeInterval, "how often every apiserver's /readyz is asked")
	f.DurationVar(&opts.DiscoverInterval, "discover-interval", opts.DiscoverInterval, "how often the apiserver endpoints are read")
	return cmd
}
