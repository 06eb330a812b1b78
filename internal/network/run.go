package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options are the settings of `selfkube network`, one flag each.
type Options struct {
	// NodeName (--node-name) is this node's name; empty means the NODE_NAME variable.
	NodeName string
	// Kubeconfig (--kubeconfig) is a kubeconfig file; empty means the in-cluster config.
	Kubeconfig string
	// CNIConfDir (--cni-conf-dir) is the host's CNI conf dir as mounted in the pod.
	CNIConfDir string
	// ConflistName (--conflist-name) is the file written in CNIConfDir.
	ConflistName string
	// ClusterCIDRs (--cluster-cidr, repeatable or comma-separated) is the cluster's pod
	// subnet, one per family; empty means the pod CIDRs of all nodes.
	ClusterCIDRs []string
	// ResyncPeriod (--resync-period) is how often routes and rules are re-checked.
	ResyncPeriod time.Duration
	// NoMasquerade (--no-masquerade) leaves masquerading of pod egress to someone else.
	NoMasquerade bool
}

// DefaultOptions returns the options the DaemonSet uses.
func DefaultOptions() Options {
	return Options{
		CNIConfDir:   DefaultHostCNIConfDir,
		ConflistName: DefaultConflistName,
		ResyncPeriod: 30 * time.Second,
	}
}

// Run runs the agent until ctx is done (SIGTERM), then stops it, leaving the conflist,
// routes and masquerade rules in place. It returns early only if the agent cannot start.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	if opts.NodeName == "" {
		opts.NodeName = os.Getenv("NODE_NAME")
	}
	clusterCIDRs, err := parseClusterCIDRs(opts.ClusterCIDRs)
	if err != nil {
		return err
	}
	client, err := newClient(opts.Kubeconfig)
	if err != nil {
		return err
	}
	routes, err := NewKernelRoutes()
	if err != nil {
		return err
	}
	defer routes.Close()
	cfg := Config{
		NodeName:     opts.NodeName,
		Client:       client,
		ConflistPath: filepath.Join(opts.CNIConfDir, opts.ConflistName),
		ClusterCIDRs: clusterCIDRs,
		ResyncPeriod: opts.ResyncPeriod,
		Routes:       routes,
		Log:          log,
	}
	if !opts.NoMasquerade {
		m, err := NewNFTablesMasquerade()
		if err != nil {
			return err
		}
		cfg.Masquerade = m
	}
	agent := New(cfg)
	if err := agent.Init(ctx); err != nil {
		return err
	}
	if err := agent.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return agent.Stop()
}

func parseClusterCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidr %q: %w; pass the cluster's pod subnet, e.g. 10.244.0.0/16", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func newClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			err = fmt.Errorf("%w; run in a pod with a service account or pass --kubeconfig", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading the client configuration: %w", err)
	}
	cfg.UserAgent = "selfkube-network"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return client, nil
}
