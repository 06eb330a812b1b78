package network

import (
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// MasqueradeRules say which pod traffic leaving the node is masqueraded: traffic from
// one of Sources to anything outside all of Exempt.
type MasqueradeRules struct {
	// Sources are this node's pod CIDRs.
	Sources []netip.Prefix
	// Exempt are the cluster's pod networks: traffic to them keeps the pod's address.
	Exempt []netip.Prefix
}

// Equal reports whether r and o hold the same prefixes in the same order.
func (r MasqueradeRules) Equal(o MasqueradeRules) bool {
	return equalPrefixes(r.Sources, o.Sources) && equalPrefixes(r.Exempt, o.Exempt)
}

// DesiredMasquerade returns the masquerade rules of node self. Sources are self's pod
// CIDRs. Exempt are clusterCIDRs when given (the cluster's pod subnet, one per family);
// without them, the pod CIDRs of every node, self included, which covers every address a
// pod can have. Malformed CIDRs are left out. Both lists are sorted and free of
// duplicates.
//
// DesiredMasquerade is pure.
func DesiredMasquerade(self *corev1.Node, nodes []*corev1.Node, clusterCIDRs []netip.Prefix) MasqueradeRules {
	var r MasqueradeRules
	if self != nil {
		r.Sources = validPrefixes(NodePodCIDRs(self))
	}
	if len(clusterCIDRs) > 0 {
		for _, p := range clusterCIDRs {
			r.Exempt = append(r.Exempt, p.Masked())
		}
	} else {
		if self != nil {
			r.Exempt = append(r.Exempt, r.Sources...)
		}
		for _, n := range nodes {
			if n != nil {
				r.Exempt = append(r.Exempt, validPrefixes(NodePodCIDRs(n))...)
			}
		}
	}
	r.Sources = sortedUnique(r.Sources)
	r.Exempt = sortedUnique(r.Exempt)
	return r
}

func validPrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil && p == p.Masked() {
			out = append(out, p)
		}
	}
	return out
}

func sortedUnique(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
	out := ps[:1]
	for _, p := range ps[1:] {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return out
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
