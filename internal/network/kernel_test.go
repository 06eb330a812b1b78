package network

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inFreshNetns runs fn on a thread moved into a new, empty network namespace. The thread
// stays locked and ends with the goroutine, so the namespace disappears with it and
// nothing outside it is touched. Skips when not root.
func inFreshNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (run the tests as root)")
	}
	skip := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip <- err
			return
		}
		defer close(skip)
		fn()
	}()
	if err := <-skip; err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
}

// setUpLink creates a veth pair t0/t1 in the current (fresh) namespace with 10.99.0.1/24
// and fd99::1/64 on t0, both up.
func setUpLink(h *netlink.Handle) error {
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "t0"}, PeerName: "t1"}); err != nil {
		return err
	}
	t0, err := h.LinkByName("t0")
	if err != nil {
		return err
	}
	for _, a := range []string{"10.99.0.1/24", "fd99::1/64"} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		addr.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(t0, addr); err != nil {
			return err
		}
	}
	for _, name := range []string{"t0", "t1"} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}

func TestKernelRoutesInNetns(t *testing.T) {
	inFreshNetns(t, func() {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			t.Errorf("netlink handle: %v", err)
			return
		}
		defer h.Close()
		if err := setUpLink(h); err != nil {
			t.Errorf("setting up the test link: %v", err)
			return
		}
		// Routes of someone else: one with the destination we will want, one with the
		// exact destination and gateway of a route we will delete.
		for _, r := range []struct {
			dst, gw string
			proto   netlink.RouteProtocol
		}{{"10.244.5.0/24", "10.99.0.5", unix.RTPROT_STATIC}, {"10.244.6.0/24", "10.99.0.2", unix.RTPROT_BOOT}} {
			_, dst, _ := net.ParseCIDR(r.dst)
			if err := h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(r.gw), Protocol: r.proto}); err != nil {
				t.Errorf("adding foreign route %s: %v", r.dst, err)
				return
			}
		}
		foreignBefore := foreignRoutes(t, h)

		k, err := NewKernelRoutes()
		if err != nil {
			t.Errorf("NewKernelRoutes: %v", err)
			return
		}
		defer k.Close()
		owned := func() []Route {
			rs, err := k.Owned()
			if err != nil {
				t.Errorf("Owned: %v", err)
			}
			return rs
		}
		if got := owned(); len(got) != 0 {
			t.Errorf("fresh namespace: owned %v, want none (foreign routes must not count)", got)
		}

		v4, v6 := route("10.244.2.0/24", "10.99.0.2"), route("fd00:10:244:2::/64", "fd99::2")
		for _, r := range []Route{v4, v6} {
			if err := k.Replace(r); err != nil {
				t.Errorf("Replace(%v): %v", r, err)
			}
		}
		if diff := cmp.Diff([]Route{v4, v6}, owned(), cmpRoutes); diff != "" {
			t.Errorf("after adding (-want +got):\n%s", diff)
		}
		// The kernel really has them, with our protocol number, on t0.
		got, err := h.RouteGet(net.ParseIP("10.244.2.7"))
		if err != nil || len(got) != 1 || !got[0].Gw.Equal(net.ParseIP("10.99.0.2")) {
			t.Errorf("route lookup of a pod address on the peer: %v, %v", got, err)
		}

		moved := route("10.244.2.0/24", "10.99.0.3")
		if err := k.Replace(moved); err != nil {
			t.Errorf("Replace(%v): %v", moved, err)
		}
		if diff := cmp.Diff([]Route{moved, v6}, owned(), cmpRoutes); diff != "" {
			t.Errorf("after the gateway change (-want +got):\n%s", diff)
		}

		if err := k.Replace(route("10.244.5.0/24", "10.99.0.7")); !errors.Is(err, ErrForeignRoute) {
			t.Errorf("Replace over a foreign route: %v, want ErrForeignRoute", err)
		}
		if err := k.Delete(route("10.244.6.0/24", "10.99.0.2")); err != nil {
			t.Errorf("Delete of a route we do not own: %v, want no error and no effect", err)
		}
		for _, r := range []Route{moved, v6, moved} { // the second delete of moved: already gone
			if err := k.Delete(r); err != nil {
				t.Errorf("Delete(%v): %v", r, err)
			}
		}
		if got := owned(); len(got) != 0 {
			t.Errorf("after deleting: owned %v, want none", got)
		}
		if diff := cmp.Diff(foreignBefore, foreignRoutes(t, h)); diff != "" {
			t.Errorf("foreign routes changed (-before +after):\n%s", diff)
		}
	})
}

// foreignRoutes lists the main table's IPv4 routes not marked with RouteProtocol.
func foreignRoutes(t *testing.T, h *netlink.Handle) []string {
	rs, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Errorf("listing routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		if r.Protocol != RouteProtocol {
			out = append(out, r.String())
		}
	}
	return out
}

func TestNFTablesMasqueradeInNetns(t *testing.T) {
	inFreshNetns(t, func() {
		m, err := NewNFTablesMasquerade()
		if err != nil {
			t.Errorf("NewNFTablesMasquerade: %v", err)
			return
		}
		table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
		rules := func() []*nftables.Rule {
			chain, err := m.conn.ListChain(table, "masquerade")
			if err != nil {
				t.Errorf("listing chain masquerade: %v", err)
				return nil
			}
			if chain.Type != nftables.ChainTypeNAT || *chain.Hooknum != *nftables.ChainHookPostrouting || *chain.Priority != *nftables.ChainPriorityNATSource {
				t.Errorf("chain %+v is not a srcnat postrouting chain", chain)
			}
			rs, err := m.conn.GetRules(table, chain)
			if err != nil {
				t.Errorf("listing rules: %v", err)
			}
			return rs
		}
		handles := func(rs []*nftables.Rule) []uint64 {
			var out []uint64
			for _, r := range rs {
				out = append(out, r.Handle)
			}
			return out
		}

		dual := MasqueradeRules{Sources: prefixes("10.244.0.0/24", "fd00:0:0:a::/64"), Exempt: prefixes("10.244.0.0/16", "fd00::/48")}
		if err := m.Ensure(dual); err != nil {
			t.Errorf("Ensure: %v", err)
			return
		}
		first := rules()
		if len(first) != 4 {
			t.Errorf("%d rules, want 4 (return + masquerade per family)", len(first))
		}

		// Same rules again: nothing rewritten.
		if err := m.Ensure(dual); err != nil {
			t.Errorf("second Ensure: %v", err)
		}
		if diff := cmp.Diff(handles(first), handles(rules())); diff != "" {
			t.Errorf("unchanged rules were rewritten (-before +after):\n%s", diff)
		}

		// Someone flushes our table away: the next Ensure puts it back.
		m.conn.DelTable(table)
		if err := m.conn.Flush(); err != nil {
			t.Errorf("deleting the table: %v", err)
		}
		if err := m.Ensure(dual); err != nil {
			t.Errorf("Ensure after deletion: %v", err)
		}
		if got := rules(); len(got) != 4 {
			t.Errorf("after restore: %d rules, want 4", len(got))
		}

		// New rules replace the old ones in place.
		v4 := MasqueradeRules{Sources: prefixes("10.244.0.0/24"), Exempt: prefixes("10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24")}
		if err := m.Ensure(v4); err != nil {
			t.Errorf("Ensure with new rules: %v", err)
		}
		if got := rules(); len(got) != 4 {
			t.Errorf("after the change: %d rules, want 3 returns + 1 masquerade", len(got))
		}
		tables, err := m.conn.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil || len(tables) != 1 {
			t.Errorf("inet tables: %v, %v; want exactly ours", tables, err)
		}
	})
}

// Real packets: from a pod address, traffic to another node's pod keeps its source and
// traffic to an address outside the cluster leaves with the node's address. Two fresh
// namespaces: "node" (this test's) and "peer", joined by a veth pair.
func TestMasqueradeTrafficInNetns(t *testing.T) {
	type peerNS struct {
		fd   int
		conn net.PacketConn
		err  error
	}
	inFreshNetns(t, func() {
		ready, release := make(chan peerNS), make(chan struct{})
		defer close(release)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				ready <- peerNS{err: err}
				return
			}
			fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ready <- peerNS{err: err}
				return
			}
			conn, err := net.ListenPacket("udp4", "0.0.0.0:9999") // a socket of the peer namespace
			ready <- peerNS{fd: fd, conn: conn, err: err}
			<-release
			conn.Close()
			unix.Close(fd)
		}()
		peer := <-ready
		if peer.err != nil {
			t.Errorf("creating the peer namespace: %v", peer.err)
			return
		}

		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			t.Errorf("netlink handle: %v", err)
			return
		}
		defer h.Close()
		ph, err := netlink.NewHandleAt(netns.NsHandle(peer.fd))
		if err != nil {
			t.Errorf("netlink handle in the peer: %v", err)
			return
		}
		defer ph.Close()
		steps := []struct {
			what string
			err  func() error
		}{
			{"veth", func() error {
				return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "t0"}, PeerName: "t1"})
			}},
			{"move t1", func() error { l, err := h.LinkByName("t1"); return errors.Join(err, h.LinkSetNsFd(l, peer.fd)) }},
			{"node addresses", func() error {
				return errors.Join(addAddr(h, "t0", "10.99.0.1/24"), addAddr(h, "lo", "10.244.0.5/32"))
			}},
			{"peer addresses", func() error {
				return errors.Join(addAddr(ph, "t1", "10.99.0.2/24"), addAddr(ph, "lo", "10.244.1.5/32"))
			}},
			{"node route to the peer's pods", func() error { return addRoute(h, "10.244.1.0/24", "10.99.0.2") }},
			{"peer route back to the node's pods", func() error { return addRoute(ph, "10.244.0.0/24", "10.99.0.1") }},
		}
		for _, s := range steps {
			if err := s.err(); err != nil {
				t.Errorf("setting up %s: %v", s.what, err)
				return
			}
		}

		m, err := NewNFTablesMasquerade()
		if err != nil {
			t.Errorf("NewNFTablesMasquerade: %v", err)
			return
		}
		if err := m.Ensure(MasqueradeRules{Sources: prefixes("10.244.0.0/24"), Exempt: prefixes("10.244.0.0/16")}); err != nil {
			t.Errorf("Ensure: %v", err)
			return
		}

		for _, tc := range []struct{ dst, wantSrc string }{
			{"10.244.1.5", "10.244.0.5"}, // pod to pod: no masquerade
			{"10.99.0.2", "10.99.0.1"},   // pod to outside the cluster: the node's address
		} {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.244.0.5")}, &net.UDPAddr{IP: net.ParseIP(tc.dst), Port: 9999})
			if err != nil {
				t.Errorf("dialing %s: %v", tc.dst, err)
				continue
			}
			_, err = c.Write([]byte(tc.dst))
			c.Close()
			if err != nil {
				t.Errorf("sending to %s: %v", tc.dst, err)
				continue
			}
			// The deadline only keeps a lost packet from hanging the test.
			_ = peer.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 64)
			n, from, err := peer.conn.ReadFrom(buf)
			if err != nil {
				t.Errorf("receiving the packet for %s: %v", tc.dst, err)
				continue
			}
			if got := from.(*net.UDPAddr).IP.String(); string(buf[:n]) != tc.dst || got != tc.wantSrc {
				t.Errorf("packet %q to %s arrived from %s, want from %s", buf[:n], tc.dst, got, tc.wantSrc)
			}
		}
	})
}

func addAddr(h *netlink.Handle, link, cidr string) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	return errors.Join(h.AddrAdd(l, a), h.LinkSetUp(l))
}

func addRoute(h *netlink.Handle, dst, gw string) error {
	_, d, err := net.ParseCIDR(dst)
	if err != nil {
		return err
	}
	return h.RouteAdd(&netlink.Route{Dst: d, Gw: net.ParseIP(gw)})
}
