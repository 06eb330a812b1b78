package network

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// node builds a Node; addrs are "Type=address" pairs, e.g. "InternalIP=172.31.0.2".
func node(name string, podCIDRs []string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	for _, a := range addrs {
		for i := range a {
			if a[i] == '=' {
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(a[:i]), Address: a[i+1:]})
				break
			}
		}
	}
	return n
}

func route(dst, gw string) Route {
	r := Route{Dst: netip.MustParsePrefix(dst)}
	if gw != "" {
		r.Gateway = netip.MustParseAddr(gw)
	}
	return r
}

var cmpRoutes = cmp.Comparer(func(a, b Route) bool { return a == b })

func TestDesiredRoutes(t *testing.T) {
	v4 := func(name, cidr, ip string) *corev1.Node { return node(name, []string{cidr}, "InternalIP="+ip) }
	for _, tc := range []struct {
		name        string
		nodes       []*corev1.Node
		self        string
		want        []Route
		wantSkipped []Skipped
	}{
		{name: "no nodes", self: "a"},
		{name: "only self", self: "a", nodes: []*corev1.Node{v4("a", "10.244.0.0/24", "172.31.0.2")}},
		{
			name: "self is left out, peers routed, sorted by destination",
			self: "b",
			nodes: []*corev1.Node{
				v4("c", "10.244.2.0/24", "172.31.0.4"),
				v4("a", "10.244.0.0/24", "172.31.0.2"),
				v4("b", "10.244.1.0/24", "172.31.0.3"),
			},
			want: []Route{route("10.244.0.0/24", "172.31.0.2"), route("10.244.2.0/24", "172.31.0.4")},
		},
		{
			name:  "self missing from the list: every node is a peer",
			self:  "x",
			nodes: []*corev1.Node{v4("a", "10.244.0.0/24", "172.31.0.2")},
			want:  []Route{route("10.244.0.0/24", "172.31.0.2")},
		},
		{
			name:  "peer without pod CIDR yet is left out silently",
			self:  "a",
			nodes: []*corev1.Node{node("b", nil, "InternalIP=172.31.0.3")},
		},
		{
			name: "only the legacy spec.podCIDR set",
			self: "a",
			nodes: []*corev1.Node{{
				ObjectMeta: metav1.ObjectMeta{Name: "b"},
				Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
				Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.31.0.3"}}},
			}},
			want: []Route{route("10.244.1.0/24", "172.31.0.3")},
		},
		{
			name:  "ExternalIP and Hostname are not gateways; first InternalIP wins",
			self:  "a",
			nodes: []*corev1.Node{node("b", []string{"10.244.1.0/24"}, "Hostname=b", "ExternalIP=203.0.113.5", "InternalIP=172.31.0.3", "InternalIP=172.31.0.33")},
			want:  []Route{route("10.244.1.0/24", "172.31.0.3")},
		},
		{
			name:        "peer without InternalIP is skipped",
			self:        "a",
			nodes:       []*corev1.Node{node("b", []string{"10.244.1.0/24"}, "ExternalIP=203.0.113.5")},
			wantSkipped: []Skipped{{Node: "b", Reason: "no InternalIP of the family of pod CIDR 10.244.1.0/24"}},
		},
		{
			name:        "malformed InternalIP is ignored",
			self:        "a",
			nodes:       []*corev1.Node{node("b", []string{"10.244.1.0/24"}, "InternalIP=not-an-ip")},
			wantSkipped: []Skipped{{Node: "b", Reason: "no InternalIP of the family of pod CIDR 10.244.1.0/24"}},
		},
		{
			name: "malformed pod CIDRs are skipped",
			self: "a",
			nodes: []*corev1.Node{
				node("b", []string{"10.244.1.0"}, "InternalIP=172.31.0.3"),
				node("c", []string{"10.244.2.7/24"}, "InternalIP=172.31.0.4"),
			},
			wantSkipped: []Skipped{
				{Node: "b", Reason: `pod CIDR "10.244.1.0" is not a network prefix`},
				{Node: "c", Reason: `pod CIDR "10.244.2.7/24" is not a network prefix`},
			},
		},
		{
			name: "duplicate pod CIDR: the first name wins",
			self: "a",
			nodes: []*corev1.Node{
				v4("d", "10.244.1.0/24", "172.31.0.5"),
				v4("c", "10.244.1.0/24", "172.31.0.4"),
			},
			want:        []Route{route("10.244.1.0/24", "172.31.0.4")},
			wantSkipped: []Skipped{{Node: "d", Reason: "pod CIDR 10.244.1.0/24 is also the pod CIDR of node c"}},
		},
		{
			name: "dual-stack peer: one route per family via the same family",
			self: "a",
			nodes: []*corev1.Node{
				node("b", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "InternalIP=fd00:172::3", "InternalIP=172.31.0.3"),
			},
			want: []Route{route("10.244.1.0/24", "172.31.0.3"), route("fd00:10:244:1::/64", "fd00:172::3")},
		},
		{
			name:        "dual-stack peer with an IPv4 InternalIP only: IPv6 skipped",
			self:        "a",
			nodes:       []*corev1.Node{node("b", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "InternalIP=172.31.0.3")},
			want:        []Route{route("10.244.1.0/24", "172.31.0.3")},
			wantSkipped: []Skipped{{Node: "b", Reason: "no InternalIP of the family of pod CIDR fd00:10:244:1::/64"}},
		},
		{
			name:  "IPv4-mapped IPv6 InternalIP counts as IPv4",
			self:  "a",
			nodes: []*corev1.Node{node("b", []string{"10.244.1.0/24"}, "InternalIP=::ffff:172.31.0.3")},
			want:  []Route{route("10.244.1.0/24", "172.31.0.3")},
		},
		{
			name:  "nil entries are ignored",
			self:  "a",
			nodes: []*corev1.Node{nil, v4("b", "10.244.1.0/24", "172.31.0.3")},
			want:  []Route{route("10.244.1.0/24", "172.31.0.3")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped := DesiredRoutes(tc.nodes, tc.self)
			if diff := cmp.Diff(tc.want, got, cmpRoutes); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSkipped, skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanRoutes(t *testing.T) {
	a := route("10.244.0.0/24", "172.31.0.2")
	b := route("10.244.1.0/24", "172.31.0.3")
	bMoved := route("10.244.1.0/24", "172.31.0.9")
	c := route("10.244.2.0/24", "172.31.0.4")
	v6 := route("fd00:10:244:1::/64", "fd00:172::3")
	noGw := route("10.244.7.0/24", "")
	for _, tc := range []struct {
		name             string
		desired, current []Route
		want             RoutePlan
	}{
		{name: "nothing"},
		{name: "all new", desired: []Route{c, a, v6}, want: RoutePlan{Replace: []Route{a, c, v6}}},
		{name: "in sync", desired: []Route{a, b}, current: []Route{b, a}},
		{name: "node deleted", desired: []Route{a}, current: []Route{a, b}, want: RoutePlan{Delete: []Route{b}}},
		{name: "all nodes gone", current: []Route{a, v6}, want: RoutePlan{Delete: []Route{a, v6}}},
		{name: "gateway changed: replace, no delete", desired: []Route{bMoved}, current: []Route{b}, want: RoutePlan{Replace: []Route{bMoved}}},
		{name: "stale duplicate beside the wanted route is deleted", desired: []Route{b}, current: []Route{b, bMoved}, want: RoutePlan{Delete: []Route{bMoved}}},
		{name: "owned route without gateway is deleted", desired: []Route{a}, current: []Route{a, noGw}, want: RoutePlan{Delete: []Route{noGw}}},
		{name: "duplicate desired entries give one replace", desired: []Route{c, c}, want: RoutePlan{Replace: []Route{c}}},
		{name: "duplicate current entries give one delete", current: []Route{c, c}, want: RoutePlan{Delete: []Route{c}}},
		{
			name:    "mixed",
			desired: []Route{a, bMoved, v6},
			current: []Route{a, b, c},
			want:    RoutePlan{Replace: []Route{bMoved, v6}, Delete: []Route{c}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanRoutes(tc.desired, tc.current)
			if diff := cmp.Diff(tc.want, got, cmpRoutes); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if got.Empty() != (len(tc.want.Replace)+len(tc.want.Delete) == 0) {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
}

// Applying a plan to the current routes gives exactly the desired routes, for every
// combination of a few routes being desired and present.
func TestPlanRoutesConverges(t *testing.T) {
	all := []Route{
		route("10.244.0.0/24", "172.31.0.2"), route("10.244.0.0/24", "172.31.0.9"),
		route("10.244.1.0/24", "172.31.0.3"), route("fd00::/64", "fd00:172::3"),
	}
	for dm := 0; dm < 1<<len(all); dm++ {
		for cm := 0; cm < 1<<len(all); cm++ {
			var desired, current []Route
			for i, r := range all {
				if dm&(1<<i) != 0 {
					desired = append(desired, r)
				}
				if cm&(1<<i) != 0 {
					current = append(current, r)
				}
			}
			if hasDuplicateDst(desired) {
				continue // DesiredRoutes never yields two gateways for one destination
			}
			state := newFakeRoutes(current...)
			plan := PlanRoutes(desired, current)
			for _, r := range plan.Replace {
				_ = state.Replace(r)
			}
			for _, r := range plan.Delete {
				_ = state.Delete(r)
			}
			got, _ := state.Owned()
			want := append([]Route(nil), desired...)
			sortRoutes(want)
			if diff := cmp.Diff(want, got, cmpRoutes); diff != "" {
				t.Errorf("desired %v, current %v: after the plan (-want +got):\n%s", desired, current, diff)
			}
			if again := PlanRoutes(desired, got); !again.Empty() {
				t.Errorf("desired %v: second plan not empty: %+v", desired, again)
			}
		}
	}
}

func hasDuplicateDst(rs []Route) bool {
	seen := map[netip.Prefix]bool{}
	for _, r := range rs {
		if seen[r.Dst] {
			return true
		}
		seen[r.Dst] = true
	}
	return false
}
