package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/join"
	"github.com/selfkube/selfkube/internal/workflow"
)

func newJoinCommand(e *env) *cobra.Command {
	var (
		token, cri, name, nodeIP string
		pins, skip               []string
		unsafeSkip, controlPlane bool
		certificateKey           string
		discoveryTimeout         time.Duration
		timeout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "join ENDPOINT --token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX",
		Short: "Make this host a node of an existing selfkube cluster",
		Long: `Join this host to a cluster. The host needs a kubelet run by its service manager and a
container runtime; ENDPOINT is the control-plane endpoint (host:port).

Nothing is written until the cluster is trusted: join fetches kube-public/cluster-info,
checks the token's signature over it and the CA against --discovery-token-ca-cert-hash,
and fetches it again over verified TLS. A wrong token, a tampered cluster-info, a wrong
CA hash, an expired or deleted token, or an unreachable endpoint each end join with its
own error and leave the host untouched.

Then join writes /etc/kubernetes/pki/ca.crt, the kubelet's bootstrap kubeconfig (the
token) and its configuration (/var/lib/kubelet); the kubelet requests its own client
certificate, which the cluster approves, and registers the node. The bootstrap
kubeconfig is removed once the node is Ready.

With --control-plane (and the --certificate-key of a join command from
` + "`selfkube token create --control-plane --print-join-command`" + `), the node also becomes a
control-plane node: it fetches the CA keys the cluster holds encrypted for it, joins etcd
as a learner and is promoted once it caught up, is added to the apiserver certificate,
and is labelled node-role.kubernetes.io/control-plane, so the apiserver and checkpointer
DaemonSets run there; the controller manager and scheduler spread onto it.

  ` + strings.Join(join.Workflow().Names(), " → "),
		Example: `  selfkube join 192.0.2.10:6443 --token abcdef.0123456789abcdef \
      --discovery-token-ca-cert-hash sha256:1234...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := bootstrap.ParseToken(token)
			if err != nil {
				return fmt.Errorf("--token: %w", err)
			}
			if unsafeSkip {
				fmt.Fprintln(e.streams.Err, "WARNING: --discovery-token-unsafe-skip-ca-verification: this node trusts whichever "+
					"server answers at "+args[0]+"; anyone on the path can impersonate the cluster")
			}
			node := config.NodeConfiguration{Name: name, NodeIP: nodeIP, AdvertiseAddress: nodeIP, CRISocket: cri}
			err = join.Run(cmd.Context(), join.Options{
				Layout: host.Default, Endpoint: args[0], Token: tok, Pins: pins,
				UnsafeSkipCAVerification: unsafeSkip, Node: node,
				ControlPlane: controlPlane, CertificateKey: certificateKey,
				DiscoveryTimeout: discoveryTimeout, Timeout: timeout,
				Status: e.status, Log: e.log,
			}, workflow.Options{Skip: skip})
			if errors.Is(err, join.ErrAlreadyJoined) {
				fmt.Fprintln(e.streams.Err, err)
				return nil
			}
			if err == nil {
				fmt.Fprintln(e.streams.Err, "This node joined the cluster; see it with kubectl get nodes.")
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&token, "token", "", "bootstrap token ID.SECRET (from `selfkube token create`)")
	f.StringSliceVar(&pins, "discovery-token-ca-cert-hash", nil, "sha256:HEX hash of the cluster CA's public key (repeatable)")
	f.BoolVar(&unsafeSkip, "discovery-token-unsafe-skip-ca-verification", false, "UNSAFE: trust the CA that cluster-info names without a pin")
	f.StringVar(&name, "node-name", "", "node name (default: the host name)")
	f.StringVar(&nodeIP, "node-ip", "", "the kubelet's node IP (default: the default-route address)")
	f.StringVar(&cri, "cri-socket", "", "container runtime endpoint (default "+config.DefaultCRISocket+")")
	f.BoolVar(&controlPlane, "control-plane", false, "make this node a control-plane node (with a stacked etcd member)")
	f.StringVar(&certificateKey, "certificate-key", "", "with --control-plane: the key that decrypts the handed-off CA keys")
	f.StringSliceVar(&skip, "skip-phases", nil, "phases not to run: "+strings.Join(join.Workflow().Names(), ", "))
	f.DurationVar(&discoveryTimeout, "discovery-timeout", time.Minute, "how long to retry discovery (endpoint unreachable, not yet signed)")
	f.DurationVar(&timeout, "timeout", 4*time.Minute, "how long to wait for the kubelet and the node")
	_ = cmd.MarkFlagRequired("token")
	return cmd
}
