package network

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/selfkube/selfkube/internal/component"
)

// Options are the settings of `selfkube network`, one flag each.
type Options struct {
	// NodeName (--node-name) is this node's name; empty means the NODE_NAME variable
	// (component.NodeName).
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

// Components are what `selfkube network` runs with component.Run: the agent, with the
// API client, this host's route table and (unless NoMasquerade) its nftables connection,
// which the agent's Stop releases. Run stops it on SIGTERM, leaving the conflist, routes
// and masquerade rules in place. Nothing on the host is touched when the node name, a
// flag or the client configuration is wrong.
func Components(opts Options, log *slog.Logger) (component.Options, []component.Component, error) {
	run := component.Options{Log: log}
	nodeName, err := component.NodeName(opts.NodeName)
	if err != nil {
		return run, nil, err
	}
	clusterCIDRs, err := parseClusterCIDRs(opts.ClusterCIDRs)
	if err != nil {
		return run, nil, err
	}
	client, err := component.Client(opts.Kubeconfig, "selfkube-network")
	if err != nil {
		return run, nil, err
	}
	routes, err := NewKernelRoutes()
	if err != nil {
		return run, nil, err
	}
	cfg := Config{
		NodeName:     nodeName,
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
			routes.Close()
			return run, nil, err
		}
		cfg.Masquerade = m
	}
	agent := New(cfg)
	agent.release = routes.Close
	return run, []component.Component{agent}, nil
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
