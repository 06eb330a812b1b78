package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// BridgeName is the Linux bridge the bridge plugin creates on every node for its pods.
const BridgeName = "cni0"

// NetworkName is the name of the CNI network in the conflist.
const NetworkName = "selfkube"

// The types below are the subset of the CNI conflist format (CNI spec 1.0.0) this agent
// writes: the bridge plugin with host-local IPAM, then portmap.

type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type bridgePlugin struct {
	Type        string    `json:"type"`
	Bridge      string    `json:"bridge"`
	IsGateway   bool      `json:"isGateway"`
	IPMasq      bool      `json:"ipMasq"`
	HairpinMode bool      `json:"hairpinMode"`
	IPAM        hostLocal `json:"ipam"`
}

type hostLocal struct {
	Type   string        `json:"type"`
	Ranges [][]ipamRange `json:"ranges"`
	Routes []ipamRoute   `json:"routes"`
}

type ipamRange struct {
	Subnet string `json:"subnet"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// DesiredConflist returns the CNI conflist for a node whose pod CIDRs are podCIDRs
// (spec.podCIDRs of its Node: one CIDR, or one IPv4 and one IPv6 CIDR for dual-stack).
// Pods get an address from host-local IPAM on the bridge cni0, whose address is their
// gateway, with a default route per family. ipMasq is false: the agent installs its own
// masquerade rule that exempts cluster destinations, so pod-to-pod traffic between nodes
// keeps the pod source address (see the package documentation).
//
// DesiredConflist is pure: the same input always gives the same bytes.
func DesiredConflist(podCIDRs []string) ([]byte, error) {
	prefixes, err := parsePodCIDRs(podCIDRs)
	if err != nil {
		return nil, err
	}
	ipam := hostLocal{Type: "host-local"}
	for _, p := range prefixes {
		ipam.Ranges = append(ipam.Ranges, []ipamRange{{Subnet: p.String()}})
		def := "0.0.0.0/0"
		if p.Addr().Is6() {
			def = "::/0"
		}
		ipam.Routes = append(ipam.Routes, ipamRoute{Dst: def})
	}
	list := conflist{
		CNIVersion: "1.0.0",
		Name:       NetworkName,
		Plugins: []any{
			bridgePlugin{
				Type:        "bridge",
				Bridge:      BridgeName,
				IsGateway:   true,
				IPMasq:      false,
				HairpinMode: true,
				IPAM:        ipam,
			},
			portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the CNI conflist: %w", err)
	}
	return append(out, '\n'), nil
}

// parsePodCIDRs checks that podCIDRs holds one or two network prefixes, at most one per
// address family, each written in canonical form (no host bits set).
func parsePodCIDRs(podCIDRs []string) ([]netip.Prefix, error) {
	if len(podCIDRs) == 0 {
		return nil, errors.New("no pod CIDR: the node has no spec.podCIDRs yet; start kube-controller-manager with --allocate-node-cidrs and --cluster-cidr")
	}
	if len(podCIDRs) > 2 {
		return nil, fmt.Errorf("%d pod CIDRs %v: expected one, or one per address family", len(podCIDRs), podCIDRs)
	}
	var out []netip.Prefix
	seen := map[bool]bool{}
	for _, s := range podCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("pod CIDR %q: %w; fix spec.podCIDRs of the node", s, err)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("pod CIDR %q has host bits set (the network is %s); fix spec.podCIDRs of the node", s, p.Masked())
		}
		if seen[p.Addr().Is4()] {
			return nil, fmt.Errorf("pod CIDRs %v hold two prefixes of one address family: expected at most one per family", podCIDRs)
		}
		seen[p.Addr().Is4()] = true
		out = append(out, p)
	}
	return out, nil
}

// writeFileIfChanged writes content to path atomically (a temporary file in the same
// directory, synced, then renamed over path) unless path already holds exactly content.
// It reports whether it wrote.
func writeFileIfChanged(path string, content []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return false, nil
	}
	if err := writeFileAtomic(path, content, mode); err != nil {
		return false, err
	}
	return true, nil
}

func writeFileAtomic(path string, content []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating a temporary file in %s: %w; check that the directory exists and is writable", dir, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(content); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp.Name(), path, err)
	}
	done = true
	return nil
}
