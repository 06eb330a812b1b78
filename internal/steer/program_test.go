package steer

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// group is listeners sharing one port, as apiservers do.
type group struct {
	port      int
	listeners []*net.TCPListener
	fds       []int
}

func reusePort(mptcp bool) *net.ListenConfig {
	lc := &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); cerr != nil {
			return cerr
		}
		return err
	}}
	lc.SetMultipathTCP(mptcp)
	return lc
}

func newGroup(t *testing.T, n int) *group { return newGroupOn(t, n, "tcp4", "127.0.0.1") }

// newGroupOn is n listeners of network on host and one port.
func newGroupOn(t *testing.T, n int, network, host string) *group {
	t.Helper()
	g := &group{}
	for i := 0; i < n; i++ {
		addr := net.JoinHostPort(host, strconv.Itoa(g.port))
		l, err := reusePort(false).Listen(context.Background(), network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		g.port = l.Addr().(*net.TCPAddr).Port
		g.listeners = append(g.listeners, l.(*net.TCPListener))
		g.fds = append(g.fds, rawFD(t, l.(*net.TCPListener)))
	}
	return g
}

func rawFD(t *testing.T, l *net.TCPListener) int {
	t.Helper()
	rc, err := l.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// dial connects once, from srcPort when it is not 0, and returns which listener accepted
// (-1: none accepted within the limit).
func (g *group) dial(t *testing.T, srcPort int) int {
	t.Helper()
	d := net.Dialer{Timeout: 300 * time.Millisecond}
	if srcPort != 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srcPort}
		d.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}
	}
	return g.dialTo(t, d, "tcp4", "127.0.0.1")
}

// dialTo connects once with d to host and returns which listener accepted (-1: none).
func (g *group) dialTo(t *testing.T, d net.Dialer, network, host string) int {
	t.Helper()
	c, err := d.Dial(network, net.JoinHostPort(host, strconv.Itoa(g.port)))
	if err != nil {
		return -1
	}
	defer func() {
		c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT: the probe port is reused at once
		c.Close()
	}()
	for i, l := range g.listeners {
		l.SetDeadline(time.Now().Add(20 * time.Millisecond))
		if a, err := l.Accept(); err == nil {
			a.(*net.TCPConn).SetLinger(0)
			a.Close()
			return i
		}
	}
	return -1
}

func load(t *testing.T) *Program {
	t.Helper()
	p, err := Load(10400) // below the ephemeral ports: no client lands in a probe slot by chance
	if err != nil {
		if os.Geteuid() != 0 && (errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission)) {
			t.Skipf("loading eBPF needs root: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestNewConnectionsGoOnlyToReadyListeners(t *testing.T) {
	p := load(t)
	g := newGroup(t, 3)
	if err := p.Attach(g.fds[0]); err != nil {
		t.Fatal(err)
	}
	for slot, fd := range g.fds {
		if err := p.SetSlot(slot, fd); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing ready: the kernel spreads connections as it would without the program.
	seen := map[int]int{}
	for i := 0; i < 60; i++ {
		seen[g.dial(t, 0)]++
	}
	if seen[-1] > 0 || len(seen) < 2 {
		t.Errorf("with no ready listener, 60 connections went to %v: want the kernel's spread over all three", seen)
	}

	// Only listener 2 ready (the old apiserver), 0 and 1 starting: every new connection
	// goes to 2.
	if err := p.SetReady([]int{2}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if got := g.dial(t, 0); got != 2 {
			t.Fatalf("connection %d went to listener %d, only 2 is ready", i, got)
		}
	}

	// 0 and 1 ready, 2 stopping: spread over 0 and 1, never 2.
	if err := p.SetReady([]int{0, 1}); err != nil {
		t.Fatal(err)
	}
	seen = map[int]int{}
	for i := 0; i < 60; i++ {
		seen[g.dial(t, 0)]++
	}
	if seen[2] > 0 || seen[-1] > 0 || seen[0] == 0 || seen[1] == 0 {
		t.Errorf("with 0 and 1 ready, 60 connections went to %v", seen)
	}

	// A ready listener that closes leaves its slot by itself: until the agent notices,
	// the next ready one gets its connections, never the stopping listener 2.
	g.listeners[1].Close()
	g.listeners = g.listeners[:1]
	for i := 0; i < 20; i++ {
		if got := g.dial(t, 0); got != 0 {
			t.Fatalf("after listener 1 closed, connection %d went to %d", i, got)
		}
	}
}

func TestProbeReachesTheListenerOfItsSlot(t *testing.T) {
	p := load(t)
	g := newGroup(t, 3)
	if err := p.Attach(g.fds[0]); err != nil {
		t.Fatal(err)
	}
	for slot, fd := range g.fds {
		if err := p.SetSlot(slot, fd); err != nil {
			t.Fatal(err)
		}
	}
	// Only 0 is ready, but a probe asks each listener, not yet ready ones included.
	if err := p.SetReady([]int{0}); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		for slot := range g.fds {
			if got := g.dial(t, int(p.ProbePort(slot))); got != slot {
				t.Errorf("round %d: the probe of slot %d reached listener %d", round, slot, got)
			}
		}
	}
	// An empty slot reaches nobody rather than some other listener.
	if err := p.SetSlot(1, -1); err != nil {
		t.Fatal(err)
	}
	if got := g.dial(t, int(p.ProbePort(1))); got != -1 {
		t.Errorf("the probe of an empty slot reached listener %d", got)
	}
	if got := g.dial(t, int(p.ProbePort(Slots))); got != 0 {
		t.Errorf("a connection from beyond the probe ports went to %d, want the ready listener 0", got)
	}
}

func TestMultipathListenerIsRefusedWithAReason(t *testing.T) {
	p := load(t)
	l, err := reusePort(true).Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err != nil || string(b) != "1\n" {
		t.Skip("this kernel has no MPTCP enabled")
	}
	err = p.SetSlot(0, rawFD(t, l.(*net.TCPListener)))
	if !errors.Is(err, ErrMultipath) {
		t.Errorf("an MPTCP listener: %v, want ErrMultipath", err)
	}
}

func TestLoadRefusesBadProbePorts(t *testing.T) {
	for _, base := range []uint16{0, 65530} {
		if _, err := Load(base); err == nil {
			t.Errorf("probe base %d accepted", base)
		}
	}
}

// TestLoopbackOfAnAPIServerIsNotSteered: kube-apiserver's loopback client reaches its
// own server through [::1] with a token and a certificate only that server knows. Those
// connections keep the kernel's choice, so a starting apiserver beside a ready one can
// reach itself; IPv4 connections to the same listeners are steered (this machine may
// have no other IPv6 address to show the same for IPv6).
func TestLoopbackOfAnAPIServerIsNotSteered(t *testing.T) {
	p := load(t)
	g := newGroupOn(t, 2, "tcp", "::")
	if err := p.Attach(g.fds[0]); err != nil {
		t.Fatal(err)
	}
	for slot, fd := range g.fds {
		if err := p.SetSlot(slot, fd); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SetReady([]int{0}); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 300 * time.Millisecond}
	for _, to := range []struct{ network, host string }{{"tcp4", "127.0.0.1"}} {
		for i := 0; i < 30; i++ {
			if got := g.dialTo(t, d, to.network, to.host); got != 0 {
				t.Fatalf("connection %d to %s went to listener %d, only 0 is ready", i, to.host, got)
			}
		}
	}
	// A probe through IPv4 reaches its slot's listener on every address, as the agent
	// probes the self-hosted apiserver.
	if got := g.dial(t, int(p.ProbePort(1))); got != 1 {
		t.Errorf("the probe of slot 1 through 127.0.0.1 reached listener %d", got)
	}
	seen := map[int]int{}
	for i := 0; i < 60; i++ {
		seen[g.dialTo(t, d, "tcp6", "::1")]++
	}
	if seen[-1] > 0 || seen[1] == 0 || seen[0] == 0 {
		t.Errorf("60 connections to [::1] went to %v: want the kernel's spread over both listeners", seen)
	}
}

// TestProbePortsAreTheNodesOwn: a connection from another address that picks a probe
// port as its source port is steered like any other, to a ready listener: only the
// node itself (127.0.0.0/8) can aim at one listener.
func TestProbePortsAreTheNodesOwn(t *testing.T) {
	other := nonLoopbackIPv4(t)
	p := load(t)
	g := newGroupOn(t, 2, "tcp4", "0.0.0.0")
	if err := p.Attach(g.fds[0]); err != nil {
		t.Fatal(err)
	}
	for slot, fd := range g.fds {
		if err := p.SetSlot(slot, fd); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SetReady([]int{0}); err != nil {
		t.Fatal(err)
	}
	probe := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: other, Port: int(p.ProbePort(1))},
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}}
	for i := 0; i < 5; i++ {
		if got := g.dialTo(t, probe, "tcp4", other.String()); got != 0 {
			t.Fatalf("connection %d from %s, source port of slot 1, went to listener %d: want the ready 0", i, other, got)
		}
	}
	// The same from 127.0.0.1 is a probe of slot 1.
	if got := g.dial(t, int(p.ProbePort(1))); got != 1 {
		t.Errorf("the probe of slot 1 from 127.0.0.1 reached listener %d", got)
	}
}

// nonLoopbackIPv4 is an IPv4 address of this machine outside 127.0.0.0/8.
func nonLoopbackIPv4(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.To4()
		}
	}
	t.Skip("this machine has no IPv4 address outside 127.0.0.0/8")
	return nil
}

func TestIPv6LoopbackIsRequired(t *testing.T) {
	v4 := &net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)}
	v6 := &net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)}
	if err := hasIPv6Loopback([]net.Addr{v4, v6}); err != nil {
		t.Errorf("with ::1: %v", err)
	}
	err := hasIPv6Loopback([]net.Addr{v4})
	if err == nil || !strings.Contains(err.Error(), "disable_ipv6=0") {
		t.Errorf("without ::1: %v, want an error that says how to enable it", err)
	}
}
