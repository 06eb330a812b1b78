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
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/workflow"
)

// joinFlags are the settings of `selfkube join` and of each `selfkube join phase`.
type joinFlags struct {
	token, cri, name, nodeIP string
	pins, skip               []string
	unsafeSkip, controlPlane bool
	certificateKey           string
	discoveryTimeout         time.Duration
	timeout                  time.Duration
}

func (f *joinFlags) register(cmd *cobra.Command, whole bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.token, "token", "", "bootstrap token ID.SECRET (from `selfkube token create`)")
	fl.StringSliceVar(&f.pins, "discovery-token-ca-cert-hash", nil, "sha256:HEX hash of the cluster CA's public key (repeatable)")
	fl.BoolVar(&f.unsafeSkip, "discovery-token-unsafe-skip-ca-verification", false, "UNSAFE: trust the CA that cluster-info names without a pin")
	fl.StringVar(&f.name, "node-name", "", "node name (default: the host name)")
	fl.StringVar(&f.nodeIP, "node-ip", "", "the kubelet's node IP (default: the default-route address)")
	fl.StringVar(&f.cri, "cri-socket", "", "container runtime endpoint (default "+config.DefaultCRISocket+")")
	fl.BoolVar(&f.controlPlane, "control-plane", false, "make this node a control-plane node (with a stacked etcd member)")
	fl.StringVar(&f.certificateKey, "certificate-key", "", "with --control-plane: the key that decrypts the handed-off CA keys")
	if whole {
		fl.StringSliceVar(&f.skip, "skip-phases", nil, "phases not to run: "+strings.Join(join.Workflow().Names(), ", "))
	}
	fl.DurationVar(&f.discoveryTimeout, "discovery-timeout", time.Minute, "how long to retry discovery (endpoint unreachable, not yet signed)")
	fl.DurationVar(&f.timeout, "timeout", 4*time.Minute, "how long to wait for the kubelet and the node")
	_ = cmd.MarkFlagRequired("token")
}

func (e *env) runJoin(cmd *cobra.Command, f *joinFlags, endpoint, only string) error {
	tok, err := bootstrap.ParseToken(f.token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	if f.unsafeSkip {
		fmt.Fprintln(e.streams.Err, "WARNING: --discovery-token-unsafe-skip-ca-verification: this node trusts whichever "+
			"server answers at "+endpoint+"; anyone on the path can impersonate the cluster")
	}
	node := config.NodeConfiguration{Name: f.name, NodeIP: f.nodeIP, AdvertiseAddress: f.nodeIP, CRISocket: f.cri}
	err = join.Run(cmd.Context(), join.Options{
		Layout: host.Default, Endpoint: endpoint, Token: tok, Pins: f.pins,
		UnsafeSkipCAVerification: f.unsafeSkip, Node: node,
		ControlPlane: f.controlPlane, CertificateKey: f.certificateKey,
		DiscoveryTimeout: f.discoveryTimeout, Timeout: f.timeout,
		Status: e.status, Log: e.log,
	}, workflow.Options{Skip: f.skip, Only: only})
	if errors.Is(err, join.ErrAlreadyJoined) {
		fmt.Fprintln(e.streams.Err, err)
		return nil
	}
	if err == nil && only == "" {
		fmt.Fprintln(e.streams.Err, "This node joined the cluster; see it with kubectl get nodes.")
	}
	return err
}

func newJoinCommand(e *env) *cobra.Command {
	f := &joinFlags{}
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

Then join checks that no node of the cluster has this node's name (a taken name is
refused: the node would take over that node's identity), and writes
/etc/kubernetes/pki/ca.crt, the kubelet's bootstrap kubeconfig (the token) and its
configuration (/var/lib/kubelet); the kubelet requests its own client certificate,
which selfkube's approver (the selfkube-controller Deployment) approves for a new name
only, and registers the node. The bootstrap kubeconfig is removed once the node is
Ready. What join wrote is recorded in /var/lib/selfkube/join.json: a join that stopped
half-way (a crash, a timeout) is finished by running the same command again, and
` + "`selfkube reset`" + ` removes it.

With --control-plane (and the --certificate-key of a join command from
` + "`selfkube token create --control-plane --print-join-command`" + `), the node also becomes a
control-plane node: it fetches the CA keys the cluster holds encrypted for it (and
deletes them from the cluster when it is done: make one join command per node), signs
its kubelet's certificate itself, joins etcd as a learner and is promoted once it caught
up, is added to the apiserver certificate, and is labelled
` + node.LabelControlPlane + `, so the apiserver and checkpointer DaemonSets run
there; the controller manager and scheduler spread onto it.

  ` + strings.Join(join.Workflow().Names(), " → "),
		Example: `  selfkube join 192.0.2.10:6443 --token abcdef.0123456789abcdef \
      --discovery-token-ca-cert-hash sha256:1234...
  selfkube join phase wait-node 192.0.2.10:6443 --token ... --discovery-token-ca-cert-hash ...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.runJoin(cmd, f, args[0], "") },
	}
	f.register(cmd, true)
	phase := &cobra.Command{Use: "phase", Short: "Run one phase of join on its own (what it needs from earlier phases, it works out)"}
	for _, p := range join.Workflow().Phases {
		pf := &joinFlags{}
		name := p.Name
		sub := &cobra.Command{
			Use:   name + " ENDPOINT",
			Short: p.Short,
			Args:  cobra.ExactArgs(1),
			RunE:  func(cmd *cobra.Command, args []string) error { return e.runJoin(cmd, pf, args[0], name) },
		}
		pf.register(sub, false)
		phase.AddCommand(sub)
	}
	cmd.AddCommand(phase)
	return cmd
}
