package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol is the routing protocol number that marks the routes this agent owns
// (`ip route show proto 115`). The agent lists, replaces and deletes only routes with
// this number, so it never touches a route it did not create.
const RouteProtocol = 115

// RouteTable is the part of the host's main routing table the agent owns.
type RouteTable interface {
	// Owned lists the routes marked with RouteProtocol.
	Owned() ([]Route, error)
	// Replace adds r, or changes the gateway of the owned route to r.Dst.
	Replace(r Route) error
	// Delete removes the owned route r; a route already gone is not an error.
	Delete(r Route) error
}

// Masquerader installs masquerade rules on the host.
type Masquerader interface {
	Ensure(rules MasqueradeRules) error
}

// ErrForeignRoute means a route the agent did not create already leads to a pod CIDR.
var ErrForeignRoute = errors.New("a route not created by selfkube exists for this destination")

// KernelRoutes is the RouteTable of the network namespace it was created in.
type KernelRoutes struct {
	h *netlink.Handle
}

// NewKernelRoutes opens a netlink handle in the calling thread's network namespace.
func NewKernelRoutes() (*KernelRoutes, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening a netlink socket for routes: %w; the agent needs CAP_NET_ADMIN and hostNetwork", err)
	}
	return &KernelRoutes{h: h}, nil
}

// Close releases the netlink socket.
func (k *KernelRoutes) Close() { k.h.Close() }

// Owned implements RouteTable.
func (k *KernelRoutes) Owned() ([]Route, error) {
	var out []Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
		rs, err := k.h.RouteListFiltered(family, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("listing routes with protocol %d: %w", RouteProtocol, err)
		}
		for _, r := range rs {
			if r.Dst == nil {
				continue
			}
			dst, ok := prefixFromIPNet(r.Dst)
			if !ok {
				continue
			}
			var gw netip.Addr
			if a, ok := netip.AddrFromSlice(r.Gw); ok {
				gw = a.Unmap()
			}
			out = append(out, Route{Dst: dst, Gateway: gw})
		}
	}
	sortRoutes(out)
	return out, nil
}

// Replace implements RouteTable. It refuses, with ErrForeignRoute, to overwrite a route
// to the same destination that carries another protocol number.
func (k *KernelRoutes) Replace(r Route) error {
	dst := ipNetFromPrefix(r.Dst)
	existing, err := k.h.RouteListFiltered(familyOf(r.Dst.Addr()), &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing routes to %s: %w", r.Dst, err)
	}
	for _, e := range existing {
		if e.Protocol != RouteProtocol {
			return fmt.Errorf("adding route %s: %w (protocol %d); delete that route if the pod CIDR now belongs to a node", r, ErrForeignRoute, e.Protocol)
		}
	}
	nr := &netlink.Route{Dst: dst, Gw: net.IP(r.Gateway.AsSlice()), Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	if err := k.h.RouteReplace(nr); err != nil {
		return fmt.Errorf("adding route %s: %w; check that the gateway is on a directly connected network", r, err)
	}
	return nil
}

// Delete implements RouteTable. The kernel matches the protocol number too, so a route
// of another owner is never removed.
func (k *KernelRoutes) Delete(r Route) error {
	nr := &netlink.Route{Dst: ipNetFromPrefix(r.Dst), Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	if r.Gateway.IsValid() {
		nr.Gw = net.IP(r.Gateway.AsSlice())
	}
	if err := k.h.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("deleting route %s: %w", r, err)
	}
	return nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNetFromPrefix(p netip.Prefix) *net.IPNet {
	bits := 128
	if p.Addr().Is4() {
		bits = 32
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// NFTablesMasquerade keeps the masquerade rules in the nftables table `inet selfkube`,
// chain `masquerade` (nat, postrouting, priority srcnat). It owns that table alone and
// rewrites it in one atomic transaction when the rules change or the table is gone.
type NFTablesMasquerade struct {
	conn *nftables.Conn
	last *MasqueradeRules
}

// TableName is the nftables table of the agent (family inet).
const TableName = "selfkube"

// NewNFTablesMasquerade opens an nftables connection in the calling thread's network
// namespace.
func NewNFTablesMasquerade() (*NFTablesMasquerade, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("opening an nftables connection: %w; the agent needs CAP_NET_ADMIN and hostNetwork", err)
	}
	return &NFTablesMasquerade{conn: c}, nil
}

// Ensure implements Masquerader.
func (m *NFTablesMasquerade) Ensure(rules MasqueradeRules) error {
	if m.last != nil && m.last.Equal(rules) {
		tables, err := m.conn.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("listing nftables tables: %w", err)
		}
		for _, t := range tables {
			if t.Name == TableName {
				return nil
			}
		}
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	// Add then delete then add: the table is replaced whether it existed or not, all in
	// one transaction, so no packet sees a half-built rule set.
	m.conn.AddTable(t)
	m.conn.DelTable(t)
	m.conn.AddTable(t)
	accept := nftables.ChainPolicyAccept
	c := m.conn.AddChain(&nftables.Chain{
		Name:     "masquerade",
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
		Policy:   &accept,
	})
	for _, e := range masqueradeExprs(rules) {
		m.conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: e})
	}
	if err := m.conn.Flush(); err != nil {
		return fmt.Errorf("writing the nftables table inet %s: %w; the kernel needs nf_tables with nat and masquerade support", TableName, err)
	}
	saved := rules
	m.last = &saved
	return nil
}

// masqueradeExprs returns the rules of the chain: for each family with a source, first
// `return` for every exempt destination of that family, then `masquerade` for every
// source of that family.
func masqueradeExprs(rules MasqueradeRules) [][]expr.Any {
	var out [][]expr.Any
	for _, v4 := range []bool{true, false} {
		var sources []netip.Prefix
		for _, s := range rules.Sources {
			if s.Addr().Is4() == v4 {
				sources = append(sources, s)
			}
		}
		if len(sources) == 0 {
			continue
		}
		for _, d := range rules.Exempt {
			if d.Addr().Is4() == v4 {
				out = append(out, append(matchPrefix(d, false), &expr.Verdict{Kind: expr.VerdictReturn}))
			}
		}
		for _, s := range sources {
			out = append(out, append(matchPrefix(s, true), &expr.Masq{}))
		}
	}
	return out
}

// matchPrefix matches packets of p's family whose source (or destination) is in p.
func matchPrefix(p netip.Prefix, source bool) []expr.Any {
	proto, length, offset := byte(unix.NFPROTO_IPV4), uint32(4), uint32(16)
	if source {
		offset = 12
	}
	if p.Addr().Is6() {
		proto, length, offset = unix.NFPROTO_IPV6, 16, 24
		if source {
			offset = 8
		}
	}
	mask := ipNetFromPrefix(p).Mask
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: length, Mask: []byte(mask), Xor: make([]byte, length)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}
