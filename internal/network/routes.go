package network

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Route is a host route to another node's pod CIDR through that node's address.
type Route struct {
	// Dst is the pod CIDR of the other node.
	Dst netip.Prefix
	// Gateway is the other node's InternalIP of the same address family.
	Gateway netip.Addr
}

func (r Route) String() string { return r.Dst.String() + " via " + r.Gateway.String() }

// Skipped is a node whose pod CIDR gets no route, and why.
type Skipped struct {
	Node   string
	Reason string
}

// DesiredRoutes returns the routes the node self needs: for every other node, a route to
// each of its pod CIDRs via its InternalIP of the same family. Nodes without a pod CIDR
// yet are left out silently (they have no pods); a node whose pod CIDR is malformed or
// that has no InternalIP of the right family is reported in skipped. When two nodes
// claim the same pod CIDR, the node whose name sorts first wins and the other is
// reported. The result is sorted by destination.
//
// DesiredRoutes is pure.
func DesiredRoutes(nodes []*corev1.Node, self string) (routes []Route, skipped []Skipped) {
	var sorted []*corev1.Node
	for _, n := range nodes {
		if n != nil {
			sorted = append(sorted, n)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	owner := map[netip.Prefix]string{}
	for _, n := range sorted {
		if n.Name == self {
			continue
		}
		for _, s := range NodePodCIDRs(n) {
			dst, err := netip.ParsePrefix(s)
			if err != nil || dst != dst.Masked() {
				skipped = append(skipped, Skipped{Node: n.Name, Reason: fmt.Sprintf("pod CIDR %q is not a network prefix", s)})
				continue
			}
			gw, ok := internalIP(n, dst.Addr().Is4())
			if !ok {
				skipped = append(skipped, Skipped{Node: n.Name, Reason: fmt.Sprintf("no InternalIP of the family of pod CIDR %s", dst)})
				continue
			}
			if other, taken := owner[dst]; taken {
				skipped = append(skipped, Skipped{Node: n.Name, Reason: fmt.Sprintf("pod CIDR %s is also the pod CIDR of node %s", dst, other)})
				continue
			}
			owner[dst] = n.Name
			routes = append(routes, Route{Dst: dst, Gateway: gw})
		}
	}
	sortRoutes(routes)
	return routes, skipped
}

// NodePodCIDRs returns spec.podCIDRs of node, or spec.podCIDR when only that is set.
func NodePodCIDRs(node *corev1.Node) []string {
	if len(node.Spec.PodCIDRs) > 0 {
		return node.Spec.PodCIDRs
	}
	if node.Spec.PodCIDR != "" {
		return []string{node.Spec.PodCIDR}
	}
	return nil
}

// internalIP returns the first InternalIP address of node in the family asked for.
func internalIP(node *corev1.Node, v4 bool) (netip.Addr, bool) {
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() == v4 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// RoutePlan is what to change to get from the owned routes to the desired ones.
type RoutePlan struct {
	// Replace are routes to add, or whose gateway to change (route replace).
	Replace []Route
	// Delete are owned routes no longer wanted.
	Delete []Route
}

// Empty reports whether the plan changes nothing.
func (p RoutePlan) Empty() bool { return len(p.Replace) == 0 && len(p.Delete) == 0 }

// PlanRoutes compares desired with current, the routes the agent owns now, and returns
// the changes. A desired route not in current is replaced (added, or its destination's
// gateway changed in place); an owned route that is not desired is deleted, unless its
// destination is being replaced (the replace overwrites it). Both lists are sorted.
//
// PlanRoutes is pure.
func PlanRoutes(desired, current []Route) RoutePlan {
	have := map[Route]bool{}
	for _, r := range current {
		have[r] = true
	}
	want := map[Route]bool{}
	replaced := map[netip.Prefix]bool{}
	var plan RoutePlan
	for _, r := range desired {
		want[r] = true
		if !have[r] && !replaced[r.Dst] {
			replaced[r.Dst] = true
			plan.Replace = append(plan.Replace, r)
		}
	}
	deleted := map[Route]bool{}
	for _, r := range current {
		if !want[r] && !replaced[r.Dst] && !deleted[r] {
			deleted[r] = true
			plan.Delete = append(plan.Delete, r)
		}
	}
	sortRoutes(plan.Replace)
	sortRoutes(plan.Delete)
	return plan
}

func sortRoutes(rs []Route) {
	sort.Slice(rs, func(i, j int) bool {
		if c := rs[i].Dst.Addr().Compare(rs[j].Dst.Addr()); c != 0 {
			return c < 0
		}
		if rs[i].Dst.Bits() != rs[j].Dst.Bits() {
			return rs[i].Dst.Bits() < rs[j].Dst.Bits()
		}
		return rs[i].Gateway.Compare(rs[j].Gateway) < 0
	})
}
