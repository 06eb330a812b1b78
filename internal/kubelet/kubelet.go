// Package kubelet writes what the kubelet of a selfkube node reads: its configuration
// file and its extra flags, and waits until it is healthy.
//
// The kubelet itself is run by the host's service manager (deploy/ holds a systemd unit);
// selfkube never starts it. The first control-plane node's kubelet gets a client
// certificate at once (auth/kubelet.conf), so it registers the moment the API answers
// instead of retrying a certificate request with growing back-off.
package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/node"
)

const systemdResolvConf = "/run/systemd/resolve/resolv.conf"

// HealthzURL is the kubelet's local health endpoint.
const HealthzURL = "http://127.0.0.1:10248/healthz"

// Configuration builds the kubelet's configuration for this node.
func Configuration(cfg *config.Config, layout host.Layout) (*kubeletv1beta1.KubeletConfiguration, error) {
	return Base(cfg, ResolvConf(layout))
}

// ResolvConf is the resolver configuration the kubelet hands pods with dnsPolicy Default.
// Where systemd-resolved runs, /etc/resolv.conf names its stub at 127.0.0.53, which means
// nothing inside a pod (CoreDNS would loop): pods get the upstream servers.
func ResolvConf(layout host.Layout) string {
	if _, err := os.Stat(filepath.Join(layout.Root, systemdResolvConf)); err == nil {
		return systemdResolvConf
	}
	return "/etc/resolv.conf"
}

// Base is the kubelet configuration of the cluster's nodes, with resolvConf as the pods'
// upstream resolver configuration. It does no I/O.
func Base(cfg *config.Config, resolvConf string) (*kubeletv1beta1.KubeletConfiguration, error) {
	dns, err := cfg.Cluster.Networking.DNSServiceIP()
	if err != nil {
		return nil, err
	}
	return &kubeletv1beta1.KubeletConfiguration{
		ResolverConfig: ptr.To(resolvConf),
		TypeMeta:       metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		// Static pods: etcd always, the temporary control plane during init, checkpoints.
		StaticPodPath: "/etc/kubernetes/manifests",
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: "/etc/kubernetes/pki/ca.crt"},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization:            kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		ClusterDNS:               []string{dns.String()},
		ClusterDomain:            cfg.Cluster.Networking.DNSDomain,
		CgroupDriver:             cfg.Node.Kubelet.CgroupDriver,
		ContainerRuntimeEndpoint: cfg.Node.CRISocket,
		RotateCertificates:       true,
		// The serving certificate comes from a CSR (signer kubernetes.io/kubelet-serving)
		// that selfkube's approver approves for the node's own names and addresses only,
		// and is renewed the same way; the API server verifies it against the cluster CA.
		ServerTLSBootstrap: true,
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        ptr.To[int32](10248),
		// selfkube supports cgroup v1 hosts (and hybrid ones); swap is the operator's call.
		FailCgroupV1: ptr.To(false),
		FailSwapOn:   ptr.To(false),
		// Pick up new and removed static pods quickly: the hand-over and checkpoints depend on it.
		FileCheckFrequency: metav1.Duration{Duration: 5 * time.Second},
	}, nil
}

// FlagsEnv is the content of the kubelet's flags file: what has no configuration field.
func FlagsEnv(cfg *config.Config) string {
	flags := map[string]string{
		"node-ip":           cfg.Node.NodeIP,
		"hostname-override": cfg.Node.Name,
	}
	if len(cfg.Node.Labels) > 0 {
		var l []string
		for k, v := range cfg.Node.Labels {
			l = append(l, k+"="+v)
		}
		sort.Strings(l)
		flags["node-labels"] = strings.Join(l, ",")
	}
	keys := make([]string, 0, len(flags))
	for k := range flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, "--"+k+"="+flags[k])
	}
	return fmt.Sprintf("KUBELET_KUBEADM_ARGS=%q\n", strings.Join(args, " "))
}

// Write writes the kubelet's configuration and flags. The kubelet is (re)started by the
// host's service manager once its configuration exists.
func Write(cfg *config.Config, layout host.Layout) ([]string, error) {
	kc, err := Configuration(cfg, layout)
	if err != nil {
		return nil, err
	}
	data, err := yaml.Marshal(kc)
	if err != nil {
		return nil, fmt.Errorf("encoding kubelet configuration: %w", err)
	}
	var report []string
	for _, f := range []struct {
		path string
		data []byte
	}{
		{layout.KubeletFlagsEnv(), []byte(FlagsEnv(cfg))},
		{layout.KubeletConfig(), data},
	} {
		a, err := host.WriteFile(f.path, f.data, 0o644)
		if err != nil {
			return nil, err
		}
		report = append(report, fmt.Sprintf("%s %s", a, f.path))
	}
	return report, nil
}

// WaitHealthy polls the kubelet's healthz until it answers ok, timeout passes or ctx ends.
func WaitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	what := "waiting for the kubelet to be healthy at " + url + " (is it running? check its service: " +
		"systemctl status kubelet, journalctl -u kubelet, and /var/lib/kubelet/config.yaml)"
	return node.Poll(ctx, 200*time.Millisecond, timeout, what, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, node.Terminal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("status %s", resp.Status)
		}
		return true, nil
	})
}
