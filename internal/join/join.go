// Package join is `selfkube join`: it makes this host a node of an existing cluster.
//
// Trust comes first and nothing is written before it: the node fetches
// kube-public/cluster-info anonymously, checks the token's JWS signature over it and the
// CA against the pinned hash, and fetches it again over TLS verified with that CA. Only
// then, and once it checked that no Node has its name, does it write the kubelet's
// bootstrap kubeconfig and configuration; the kubelet requests its own client certificate
// (which selfkube's approver approves for a new name only) and registers the node. A
// control-plane node's kubelet gets its certificate signed by the join itself, with the
// handed-off CA: a bootstrap token never yields a control-plane node's identity.
package join

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/approver"
	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/discovery"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/kubelet"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/pki"
	"github.com/selfkube/selfkube/internal/status"
	"github.com/selfkube/selfkube/internal/steer"
	"github.com/selfkube/selfkube/internal/workflow"
)

// Options of one join.
type Options struct {
	Layout   host.Layout
	Endpoint string
	Token    bootstrap.Token
	// Pins are sha256:<hex> hashes of the CA's public key.
	Pins []string
	// UnsafeSkipCAVerification trusts whatever CA cluster-info names (the caller warns).
	UnsafeSkipCAVerification bool
	// Node describes this machine (name, addresses, CRI socket, labels).
	Node config.NodeConfiguration
	// ControlPlane makes this node a control-plane node: a member of etcd, with the
	// self-hosted apiserver, controller manager and scheduler spread onto it.
	ControlPlane bool
	// CertificateKey decrypts the CA keys handed off through the cluster.
	CertificateKey   string
	DiscoveryTimeout time.Duration
	Timeout          time.Duration
	Status           *status.Printer
	Log              *slog.Logger
}

// Data is what the phases share. What one phase learns (the verified cluster, its
// configuration, the handed-off CA) comes from an accessor that works it out on first use,
// so any phase runs on its own (`join phase NAME`) or with others skipped.
type Data struct {
	Options
	// Record is this join's record on the node (host.Record "join").
	Record *host.Record

	cluster *discovery.Cluster
	cfg     *config.Config
	ca      *pki.KeyPair         // control plane: the cluster CA
	handOff map[string][]byte    // control plane: the decrypted hand-off files
	admin   kubernetes.Interface // control plane: a client made with it
	// adminConf is admin.conf's content (control plane), made once.
	adminConf []byte
	etcdID    uint64 // control plane: this node's etcd member
	// etcdEndpoints are the client URLs of the other members (control plane).
	etcdEndpoints []string

	// newClient makes API clients (a fake in tests).
	newClient func(*rest.Config) (kubernetes.Interface, error)
	// fetch runs discovery (a fake in tests).
	fetch func(ctx context.Context) (*discovery.Cluster, error)
}

// ErrAlreadyJoined says the node has a kubelet kubeconfig already and nothing changed.
var ErrAlreadyJoined = errors.New("this node already belongs to a cluster")

// Workflow lists join's phases.
func Workflow() *workflow.Workflow[*Data] {
	return &workflow.Workflow[*Data]{Phases: []workflow.Phase[*Data]{
		{Name: "preflight", Short: "preflight checks", Run: preflight},
		{Name: "discovery", Short: "discovering and verifying the cluster", Run: discover},
		{Name: "cluster-config", Short: "reading the cluster configuration", Run: clusterConfig},
		{Name: "control-plane-certs", Short: "fetching and verifying the CA keys", Run: controlPlaneCerts, RunIf: isControlPlane},
		{Name: "node-name", Short: "checking that the node name is free", Run: nodeNameFree},
		{Name: "etcd-member", Short: "issuing etcd certificates, adding this node to etcd as a learner", Run: etcdMember, RunIf: isControlPlane},
		{Name: "kubelet", Short: "kubelet configuration and client certificate", Run: kubeletStart},
		{Name: "etcd-promote", Short: "promoting this node's etcd member once it caught up", Run: etcdPromote, RunIf: isControlPlane},
		{Name: "apiserver-cert", Short: "adding this node to the apiserver certificate", Run: apiServerCert, RunIf: isControlPlane},
		{Name: "mark-control-plane", Short: "labelling the node as control plane", Run: markControlPlane, RunIf: isControlPlane},
		{Name: "wait-node", Short: "waiting for the node to be Ready", Run: waitNode},
		{Name: "wait-control-plane", Short: "waiting for the control plane on this node", Run: waitControlPlane, RunIf: isControlPlane},
	}}
}

func isControlPlane(d *Data) bool { return d.ControlPlane }

// ErrUnfinished says an earlier join of this node stopped half-way with other settings.
var ErrUnfinished = errors.New("an earlier join of this node did not finish")

// Resume is what a run of join does, given what the node holds.
type Resume int

const (
	// Fresh: nothing of a join here; run every phase.
	Fresh Resume = iota
	// Continue: an earlier join stopped half-way; run every phase again (they converge).
	Continue
	// Joined: a join finished here, or the node belongs to a cluster selfkube join did not
	// make it part of (init, kubeadm): change nothing.
	Joined
)

// NodeState is what decides a re-run: the join record and whether the kubelet has a
// kubeconfig.
type NodeState struct {
	Record            host.Record
	RecordExists      bool
	KubeletKubeconfig bool
}

// Rerun decides what a join with opts does on a node in state st, when all phases run
// (`join phase NAME` runs that phase whatever the state). A join that stopped half-way
// resumes only with the same node name and role: anything else needs a reset first.
func Rerun(st NodeState, opts Options) (Resume, error) {
	switch {
	case st.RecordExists && st.Record.IsCompleted():
		return Joined, nil
	case st.RecordExists:
		if st.Record.NodeName != "" && opts.Node.Name != "" && st.Record.NodeName != opts.Node.Name ||
			st.Record.ControlPlane != opts.ControlPlane {
			return 0, fmt.Errorf("%w: it was a join as node %q (control plane: %v), this one is as %q (control plane: %v): "+
				"run the same join command again to finish it, or `selfkube reset` to start over", ErrUnfinished,
				st.Record.NodeName, st.Record.ControlPlane, opts.Node.Name, opts.ControlPlane)
		}
		return Continue, nil
	case st.KubeletKubeconfig:
		return Joined, nil
	}
	return Fresh, nil
}

// Run joins this node, or finishes a join that stopped half-way.
func Run(ctx context.Context, opts Options, sel workflow.Options) error {
	rec, err := host.LoadRecord(opts.Layout, "join")
	if err != nil {
		return err
	}
	if sel.Only == "" {
		_, statErr := os.Stat(opts.Layout.KubeletKubeconfig())
		what, err := Rerun(NodeState{Record: *rec, RecordExists: rec.Exists(), KubeletKubeconfig: statErr == nil}, opts)
		if err != nil {
			return err
		}
		switch what {
		case Joined:
			return fmt.Errorf("%w (%s exists): nothing was changed; run `selfkube reset` first to join another cluster",
				ErrAlreadyJoined, opts.Layout.KubeletKubeconfig())
		case Continue:
			opts.Status.Infof("resuming the join that stopped after %v", rec.Done)
		}
	}
	d := &Data{Options: opts, Record: rec}
	sel.Status = opts.Status
	sel.Finished = rec.Finished
	if err := Workflow().Run(ctx, d, sel); err != nil {
		return err
	}
	if sel.Only == "" && len(sel.Skip) == 0 {
		rec.Completed = time.Now()
		return rec.Save()
	}
	return nil
}

func preflight(_ context.Context, d *Data) error {
	if os.Geteuid() != 0 {
		return errors.New("join writes to /etc/kubernetes and /var/lib/kubelet: run it as root")
	}
	if d.ControlPlane && d.CertificateKey == "" {
		return errors.New("--control-plane needs the --certificate-key of the join command that " +
			"`selfkube token create --control-plane --print-join-command` printed")
	}
	if d.ControlPlane {
		// Its apiserver pod is Ready only through selfkube-apiserver-steer.
		if err := steer.Supported(); err != nil {
			return fmt.Errorf("this node cannot run a self-hosted apiserver: %w", err)
		}
	}
	if len(d.Pins) == 0 && !d.UnsafeSkipCAVerification {
		return errors.New("no --discovery-token-ca-cert-hash given: pin the cluster CA with the hash `selfkube init` printed " +
			"(or, knowing the risk, pass --discovery-token-unsafe-skip-ca-verification)")
	}
	return nil
}

func discover(ctx context.Context, d *Data) error {
	_, err := d.Cluster(ctx)
	return err
}

// Cluster is the verified cluster: discovery runs on first use.
func (d *Data) Cluster(ctx context.Context) (*discovery.Cluster, error) {
	if d.cluster != nil {
		return d.cluster, nil
	}
	fetch := d.fetch
	if fetch == nil {
		fetch = func(ctx context.Context) (*discovery.Cluster, error) {
			return discovery.Fetch(ctx, d.Endpoint, d.Token, d.Pins, discovery.Options{
				UnsafeSkipCAVerification: d.UnsafeSkipCAVerification,
				Timeout:                  d.DiscoveryTimeout,
				RetryInterval:            time.Second,
				Progress:                 d.Status.Infof,
			})
		}
	}
	cluster, err := fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w\nnothing was written on this node", err)
	}
	d.cluster = cluster
	return cluster, nil
}

// client makes an API client of cfg.
func (d *Data) client(cfg *rest.Config) (kubernetes.Interface, error) {
	if d.newClient != nil {
		return d.newClient(cfg)
	}
	return kubernetes.NewForConfig(cfg)
}

// tokenClient is a client of the verified cluster that authenticates with the token.
func (d *Data) tokenClient(ctx context.Context) (kubernetes.Interface, error) {
	cluster, err := d.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	return d.client(&rest.Config{
		Host:            cluster.Server,
		BearerToken:     d.Token.String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CAData},
		Timeout:         15 * time.Second,
	})
}

func clusterConfig(ctx context.Context, d *Data) error {
	_, err := d.Config(ctx)
	return err
}

// Config is the cluster's configuration (kube-system/selfkube-config, read with the token)
// with this node's settings: read on first use.
func (d *Data) Config(ctx context.Context) (*config.Config, error) {
	if d.cfg != nil {
		return d.cfg, nil
	}
	client, err := d.tokenClient(ctx)
	if err != nil {
		return nil, err
	}
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, manifests.ClusterConfigName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s with the token: %w\nnothing was written on this node", manifests.ClusterConfigName, err)
	}
	cluster, err := manifests.ClusterConfigFrom(cm)
	if err != nil {
		return nil, err
	}
	cfg := &config.Config{Node: d.Node, Cluster: cluster}
	// A joining node is not at the control-plane endpoint: its address is its own
	// default-route address unless given (the control plane's defaulting would pick the
	// endpoint's host).
	h := config.DetectHost()
	if cfg.Node.AdvertiseAddress == "" {
		cfg.Node.AdvertiseAddress = h.DefaultAddress
	}
	config.Default(cfg, h)
	if errs := config.Validate(cfg); len(errs) > 0 {
		return nil, fmt.Errorf("this node's settings are not valid: %v", errs.ToAggregate())
	}
	d.cfg = cfg
	return cfg, nil
}

// nodeNameFree refuses a name that a Node has: the kubelet would take over that node's
// identity (and selfkube's approver would deny its certificate anyway). A control-plane
// node also needs a name that no bootstrap token was given a certificate for: such a
// certificate cannot be revoked, and on a control-plane node the node identity reads the
// control plane's Secrets. A join resumed after its kubelet phase finds its own Node.
func nodeNameFree(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	name := cfg.Node.Name
	if d.Record != nil && d.Record.NodeName == name && d.Record.Has("kubelet") {
		d.Status.Infof("node %s is this node's: an earlier run of this join started its kubelet", name)
		return nil
	}
	client, err := d.tokenClient(ctx)
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return fmt.Errorf("%w: a node named %s is already in the cluster: join this machine under another name with --node-name, "+
			"or, if it replaces %s, remove the old one first (kubectl delete node %s)\nnothing was written on this node", ErrNodeNameTaken, name, name, name)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("checking whether node %s exists, with the token: %w\nnothing was written on this node", name, err)
	}
	if !d.ControlPlane {
		return nil
	}
	admin, err := d.adminClient(ctx)
	if err != nil {
		return err
	}
	ledger, err := admin.CoreV1().ConfigMaps(approver.LedgerNamespace).Get(ctx, approver.LedgerName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %s/%s: %w\nnothing was written on this node", approver.LedgerNamespace, approver.LedgerName, err)
	}
	if csr, ok := ledger.Data[name]; ok && err == nil {
		return fmt.Errorf("%w: a bootstrap token was given a certificate for node %s (CSR %s), and it cannot be revoked: "+
			"join this control-plane node under another name with --node-name\nnothing was written on this node", ErrNodeNameTaken, name, csr)
	}
	return nil
}

// ErrNodeNameTaken says the node name is not free.
var ErrNodeNameTaken = errors.New("the node name is taken")

// write records path as this join's, then writes it (host.WriteFile).
func (d *Data) write(path string, data []byte, mode os.FileMode) error {
	if d.Record != nil {
		if err := d.Record.Own(path); err != nil {
			return err
		}
	}
	_, err := host.WriteFile(path, data, mode)
	return err
}

func kubeletStart(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	cluster, err := d.Cluster(ctx)
	if err != nil {
		return err
	}
	if d.Record != nil {
		d.Record.NodeName, d.Record.ControlPlane = cfg.Node.Name, d.ControlPlane
	}
	if err := os.MkdirAll(d.Layout.ManifestsDir(), 0o755); err != nil {
		return err
	}
	if err := d.write(filepath.Join(d.Layout.PKIDir(), "ca.crt"), cluster.CAData, 0o644); err != nil {
		return err
	}
	// The kubelet reaches the API through the node-local load balancer, which starts with
	// the endpoint and learns every apiserver: the node keeps its API when one dies.
	proxy, err := manifests.Encode(manifests.APIProxyPod(cfg, []string{strings.TrimPrefix(cluster.Server, "https://")}))
	if err != nil {
		return err
	}
	if err := d.write(filepath.Join(d.Layout.ManifestsDir(), manifests.APIProxyManifest), proxy, 0o600); err != nil {
		return err
	}
	switch _, statErr := os.Stat(d.Layout.KubeletKubeconfig()); {
	case statErr == nil && d.Record != nil && d.Record.Has("kubelet"):
		d.Status.Infof("using the kubelet's existing kubeconfig %s", d.Layout.KubeletKubeconfig())
	case d.ControlPlane:
		// A control-plane node's identity comes only from this path, whose holder proved
		// the certificate key: its kubelet certificate is signed here, never approved for
		// a bootstrap token.
		data, err := d.issueKubeconfig(ctx, kubeconfig.Kubelet, manifests.APIProxyServer())
		if err != nil {
			return err
		}
		if err := d.write(d.Layout.KubeletKubeconfig(), data, 0o600); err != nil {
			return err
		}
	default:
		data, err := kubeconfig.ForToken(manifests.APIProxyServer(), cluster.CAData, d.Token.String())
		if err != nil {
			return err
		}
		if err := d.write(d.Layout.BootstrapKubeletKubeconfig(), data, 0o600); err != nil {
			return err
		}
	}
	for _, p := range []string{d.Layout.KubeletFlagsEnv(), d.Layout.KubeletConfig()} {
		if d.Record == nil {
			break
		}
		if err := d.Record.Own(p); err != nil {
			return err
		}
	}
	if _, err := kubelet.Write(cfg, d.Layout); err != nil {
		return err
	}
	return kubelet.WaitHealthy(ctx, kubelet.HealthzURL, d.Timeout)
}

func waitNode(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	name := cfg.Node.Name
	what := "waiting for node " + name + " to be Ready (check the kubelet's log (journalctl -u kubelet) " +
		"and, for a worker, its certificate request (kubectl get csr))"
	err = node.Poll(ctx, 250*time.Millisecond, d.Timeout, what, func(ctx context.Context) (bool, error) {
		// The kubelet writes its kubeconfig once its certificate is issued.
		rc, err := clientcmd.BuildConfigFromFlags("", d.Layout.KubeletKubeconfig())
		if err != nil {
			return false, fmt.Errorf("the kubelet has no client certificate yet: %w", err)
		}
		client, err := d.client(rc)
		if err != nil {
			return false, node.Terminal(err)
		}
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if !node.Ready(n) {
			return false, fmt.Errorf("node %s is registered but not Ready", name)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	// The token is not needed any more; the kubelet renews its own certificate.
	if err := os.Remove(d.Layout.BootstrapKubeletKubeconfig()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
