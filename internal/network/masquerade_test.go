package network

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	corev1 "k8s.io/api/core/v1"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestDesiredMasquerade(t *testing.T) {
	self := node("a", []string{"10.244.0.0/24", "fd00:0:0:a::/64"}, "InternalIP=172.31.0.2")
	peer := node("b", []string{"10.244.1.0/24"}, "InternalIP=172.31.0.3")
	bad := node("c", []string{"10.244.2.9/24"}, "InternalIP=172.31.0.4")
	for _, tc := range []struct {
		name    string
		self    *corev1.Node
		nodes   []*corev1.Node
		cluster []netip.Prefix
		want    MasqueradeRules
	}{
		{name: "no self, no nodes"},
		{
			name:    "cluster CIDRs given: they are the exemption, host bits dropped",
			self:    self,
			nodes:   []*corev1.Node{self, peer},
			cluster: []netip.Prefix{netip.MustParsePrefix("fd00::1/48"), netip.MustParsePrefix("10.244.0.0/16")},
			want:    MasqueradeRules{Sources: prefixes("10.244.0.0/24", "fd00:0:0:a::/64"), Exempt: prefixes("10.244.0.0/16", "fd00::/48")},
		},
		{
			name:  "no cluster CIDRs: every node's pod CIDRs, deduplicated, malformed left out",
			self:  self,
			nodes: []*corev1.Node{peer, self, bad, nil},
			want: MasqueradeRules{
				Sources: prefixes("10.244.0.0/24", "fd00:0:0:a::/64"),
				Exempt:  prefixes("10.244.0.0/24", "10.244.1.0/24", "fd00:0:0:a::/64"),
			},
		},
		{
			name:  "self without pod CIDR: no sources",
			self:  node("a", nil),
			nodes: []*corev1.Node{peer},
			want:  MasqueradeRules{Exempt: prefixes("10.244.1.0/24")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DesiredMasquerade(tc.self, tc.nodes, tc.cluster)
			if diff := cmp.Diff(tc.want, got, cmpPrefix); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			if !got.Equal(tc.want) {
				t.Errorf("Equal disagrees with cmp.Diff")
			}
		})
	}
}

// The chain, rule by rule: returns for exempt destinations of a family come before the
// masquerade of that family's sources, and a family without sources gets no rules.
func TestMasqueradeExprs(t *testing.T) {
	type rule struct {
		family  byte
		offset  uint32
		net     string
		verdict string
	}
	summarize := func(exprs [][]expr.Any) []rule {
		var out []rule
		for _, e := range exprs {
			var r rule
			r.family = e[1].(*expr.Cmp).Data[0]
			r.offset = e[2].(*expr.Payload).Offset
			addr, _ := netip.AddrFromSlice(e[4].(*expr.Cmp).Data)
			ones := 0
			for _, b := range e[3].(*expr.Bitwise).Mask {
				for ; b != 0; b <<= 1 {
					ones++
				}
			}
			r.net = netip.PrefixFrom(addr, ones).String()
			switch v := e[5].(type) {
			case *expr.Masq:
				r.verdict = "masquerade"
			case *expr.Verdict:
				if v.Kind == expr.VerdictReturn {
					r.verdict = "return"
				}
			}
			out = append(out, r)
		}
		return out
	}
	got := summarize(masqueradeExprs(MasqueradeRules{
		Sources: prefixes("10.244.0.0/24"),
		Exempt:  prefixes("10.244.0.0/16", "192.168.0.0/16", "fd00::/48"),
	}))
	want := []rule{
		{2, 16, "10.244.0.0/16", "return"},
		{2, 16, "192.168.0.0/16", "return"},
		{2, 12, "10.244.0.0/24", "masquerade"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(rule{})); diff != "" {
		t.Errorf("IPv4-only rules (-want +got):\n%s", diff)
	}
	got = summarize(masqueradeExprs(MasqueradeRules{
		Sources: prefixes("10.244.0.0/24", "fd00:0:0:a::/64"),
		Exempt:  prefixes("10.244.0.0/16", "fd00::/48"),
	}))
	want = []rule{
		{2, 16, "10.244.0.0/16", "return"},
		{2, 12, "10.244.0.0/24", "masquerade"},
		{10, 24, "fd00::/48", "return"},
		{10, 8, "fd00:0:0:a::/64", "masquerade"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(rule{})); diff != "" {
		t.Errorf("dual-stack rules (-want +got):\n%s", diff)
	}
	if got := masqueradeExprs(MasqueradeRules{Exempt: prefixes("10.244.0.0/16")}); len(got) != 0 {
		t.Errorf("no sources gave %d rules, want none", len(got))
	}
}
