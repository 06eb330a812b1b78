package framework

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Cluster-wide settings of the kubeadm baseline.
const (
	// PodCIDR is the cluster's pod network; each node owns a /24 of it (see PodSubnet).
	PodCIDR = "10.244.0.0/16"
	// bootstrapToken lets workers join; fixed, since the cluster lives for one test.
	bootstrapToken = KubeadmBootstrapToken
	// criSocket is containerd's socket inside every node.
	criSocket = "unix:///run/containerd/containerd.sock"
)

// KubeadmPreflightIgnored are the kubeadm preflight checks this substrate cannot pass, with
// why. Everything else must pass.
var KubeadmPreflightIgnored = []string{
	// The host is cgroup v1 (hybrid). kubeadm v1.36's system verification refuses that unless
	// the check is skipped explicitly, besides the kubelet's failCgroupV1: false. It is the
	// only preflight error on this machine kind (checked with `kubeadm init phase preflight`).
	"SystemVerification",
}

// kubeadm's configuration API (kubeadm.k8s.io/v1beta4): the few fields the baseline sets.
// kubeadm's own types live in k8s.io/kubernetes, which is not importable as a library.
type (
	typeMeta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	nodeRegistration struct {
		Name                  string   `json:"name"`
		CRISocket             string   `json:"criSocket"`
		IgnorePreflightErrors []string `json:"ignorePreflightErrors,omitempty"`
	}
	initConfiguration struct {
		typeMeta         `json:",inline"`
		BootstrapTokens  []map[string]any `json:"bootstrapTokens"`
		LocalAPIEndpoint map[string]any   `json:"localAPIEndpoint"`
		NodeRegistration nodeRegistration `json:"nodeRegistration"`
	}
	clusterConfiguration struct {
		typeMeta             `json:",inline"`
		KubernetesVersion    string            `json:"kubernetesVersion"`
		ImageRepository      string            `json:"imageRepository"`
		ControlPlaneEndpoint string            `json:"controlPlaneEndpoint"`
		Networking           map[string]string `json:"networking"`
		APIServer            map[string]any    `json:"apiServer"`
	}
	joinConfiguration struct {
		typeMeta         `json:",inline"`
		Discovery        map[string]any   `json:"discovery"`
		NodeRegistration nodeRegistration `json:"nodeRegistration"`
	}
	// The kubelet and kube-proxy settings this machine kind needs (see ENVIRONMENT.md).
	kubeletConfiguration struct {
		typeMeta     `json:",inline"`
		CgroupDriver string `json:"cgroupDriver"`
		FailCgroupV1 bool   `json:"failCgroupV1"`
		FailSwapOn   bool   `json:"failSwapOn"`
		// ResolvConf is the upstream DNS handed to dnsPolicy=Default pods such as CoreDNS;
		// the node's own /etc/resolv.conf points at 127.0.0.1, a loop for CoreDNS.
		ResolvConf string `json:"resolvConf"`
	}
	kubeProxyConfiguration struct {
		typeMeta  `json:",inline"`
		Conntrack map[string]any `json:"conntrack"`
	}
)

// KubeadmCluster is a cluster made by kubeadm on harness nodes.
type KubeadmCluster struct {
	h            *Harness
	ControlPlane *Node
	Workers      []*Node
}

// renderYAML joins objects into one multi-document YAML file.
func renderYAML(objs ...any) ([]byte, error) {
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("rendering kubeadm config: %w", err)
		}
		docs = append(docs, string(b))
	}
	return []byte(strings.Join(docs, "---\n")), nil
}

// KubeadmInitConfig renders the kubeadm init configuration for control-plane node cp.
func (h *Harness) KubeadmInitConfig(cp *Node) ([]byte, error) {
	return h.kubeadmInitConfigAt(cp, h.cfg.KubeVersion)
}

// kubeadmInitConfigAt is KubeadmInitConfig for a control plane of another version (the
// harness's kubeadm makes one minor older too).
func (h *Harness) kubeadmInitConfigAt(cp *Node, version string) ([]byte, error) {
	ignored := KubeadmPreflightIgnored
	if version != h.cfg.KubeVersion {
		// kubeadm asks the kubelet in PATH (the harness's release), not the node's own
		// older one (Node.KubeletVersion) that runs.
		ignored = append(slices.Clone(ignored), "KubeletVersion")
	}
	return renderYAML(
		initConfiguration{
			typeMeta:         typeMeta{"kubeadm.k8s.io/v1beta4", "InitConfiguration"},
			BootstrapTokens:  []map[string]any{{"token": bootstrapToken, "ttl": "24h0m0s", "groups": []string{"system:bootstrappers:kubeadm:default-node-token"}, "usages": []string{"signing", "authentication"}}},
			LocalAPIEndpoint: map[string]any{"advertiseAddress": cp.IP, "bindPort": 6443},
			NodeRegistration: nodeRegistration{Name: cp.Name, CRISocket: criSocket, IgnorePreflightErrors: ignored},
		},
		clusterConfiguration{
			typeMeta:             typeMeta{"kubeadm.k8s.io/v1beta4", "ClusterConfiguration"},
			KubernetesVersion:    version,
			ImageRepository:      "registry.local",
			ControlPlaneEndpoint: cp.IP + ":6443",
			Networking:           map[string]string{"podSubnet": PodCIDR, "serviceSubnet": "10.96.0.0/12", "dnsDomain": "cluster.local"},
			APIServer:            map[string]any{"certSANs": []string{cp.IP, "127.0.0.1"}},
		},
		kubeletConfiguration{
			typeMeta:     typeMeta{"kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"},
			CgroupDriver: "cgroupfs",
			FailCgroupV1: false,
			FailSwapOn:   false,
			ResolvConf:   "/run/systemd/resolve/resolv.conf",
		},
		kubeProxyConfiguration{
			typeMeta: typeMeta{"kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"},
			// 0: leave nf_conntrack_max alone; it is not settable from a node's namespace.
			Conntrack: map[string]any{"maxPerCore": 0},
		},
	)
}

// KubeadmInit runs `kubeadm init` on node cp and returns the cluster and the wall time of
// the command.
func (h *Harness) KubeadmInit(ctx context.Context, cp *Node) (*KubeadmCluster, time.Duration, error) {
	return h.KubeadmInitAt(ctx, cp, h.cfg.KubeVersion)
}

// KubeadmInitAt is KubeadmInit of a control plane at version.
func (h *Harness) KubeadmInitAt(ctx context.Context, cp *Node, version string) (*KubeadmCluster, time.Duration, error) {
	cfg, err := h.kubeadmInitConfigAt(cp, version)
	if err != nil {
		return nil, 0, err
	}
	path := filepath.Join(cp.Dir(), "kubeadm-init.yaml")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		return nil, 0, fmt.Errorf("writing kubeadm config: %w", err)
	}
	start := time.Now()
	out, err := cp.Exec(ctx, h.cfg.Kubeadm(), "init", "--config", path, "--skip-token-print")
	took := time.Since(start)
	if err != nil {
		return nil, took, fmt.Errorf("kubeadm init: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cp.Dir(), "log", "kubeadm-init.log"), []byte(out), 0o644); err != nil {
		return nil, took, fmt.Errorf("saving kubeadm output: %w", err)
	}
	h.logf("kubeadm init on %s: %s", cp.Name, took.Round(time.Millisecond))
	return &KubeadmCluster{h: h, ControlPlane: cp}, took, nil
}

// KubeadmClusterOn returns the cluster whose control plane an earlier KubeadmInit set up on cp.
func (h *Harness) KubeadmClusterOn(cp *Node) *KubeadmCluster {
	return &KubeadmCluster{h: h, ControlPlane: cp}
}

// Join runs `kubeadm join` on node n, pinning the cluster CA by its public key hash, and
// returns the wall time of the command.
func (c *KubeadmCluster) Join(ctx context.Context, n *Node) (time.Duration, error) {
	hash, err := caCertHash(c.ControlPlane.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		return 0, err
	}
	cfg, err := renderYAML(joinConfiguration{
		typeMeta: typeMeta{"kubeadm.k8s.io/v1beta4", "JoinConfiguration"},
		Discovery: map[string]any{"bootstrapToken": map[string]any{
			"apiServerEndpoint": c.ControlPlane.IP + ":6443",
			"token":             bootstrapToken,
			"caCertHashes":      []string{hash},
		}},
		NodeRegistration: nodeRegistration{Name: n.Name, CRISocket: criSocket, IgnorePreflightErrors: KubeadmPreflightIgnored},
	})
	if err != nil {
		return 0, err
	}
	path := filepath.Join(n.Dir(), "kubeadm-join.yaml")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		return 0, fmt.Errorf("writing kubeadm join config: %w", err)
	}
	start := time.Now()
	out, err := n.Exec(ctx, c.h.cfg.Kubeadm(), "join", "--config", path)
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("kubeadm join: %w", err)
	}
	if err := os.WriteFile(filepath.Join(n.Dir(), "log", "kubeadm-join.log"), []byte(out), 0o644); err != nil {
		return took, fmt.Errorf("saving kubeadm output: %w", err)
	}
	c.Workers = append(c.Workers, n)
	c.h.logf("kubeadm join of %s: %s", n.Name, took.Round(time.Millisecond))
	return took, nil
}

// KubeadmBootstrapToken is the token KubeadmCluster.Join joins with (a selfkube cluster
// must be given it with `selfkube token create`).
const KubeadmBootstrapToken = "skube0.e2ebootstraptokn"

// caCertHash is kubeadm's "sha256:<hex>" pin of a CA: the hash of its public key info.
func caCertHash(caFile string) (string, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return "", fmt.Errorf("reading cluster CA: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return "", fmt.Errorf("cluster CA %s is not PEM", caFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parsing cluster CA: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// AdminKubeconfig is the host path of the cluster's admin kubeconfig. Its server is the
// control-plane node's address, which the host reaches over the bridge.
func (c *KubeadmCluster) AdminKubeconfig() string {
	return c.ControlPlane.HostPath("/etc/kubernetes/admin.conf")
}

// Client returns a clientset and REST config for the admin kubeconfig.
func (c *KubeadmCluster) Client() (*kubernetes.Clientset, *rest.Config, error) {
	return ClientFromKubeconfig(c.AdminKubeconfig())
}

// RestConfig loads a kubeconfig and points it at server (the node's address, reachable
// from the host) instead of the server it names.
func RestConfig(path, server string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags(server, path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// ClientFromKubeconfig builds a clientset with short timeouts (the e2e suite polls).
func ClientFromKubeconfig(path string) (*kubernetes.Clientset, *rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating client: %w", err)
	}
	return cs, cfg, nil
}
