package fence

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestProcNetAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"172.31.0.31:6443", "1F001FAC:192B"},
		{"127.0.0.1:80", "0100007F:0050"},
		{"[fd00::1]:6443", "000000FD000000000000000001000000:192B"},
	} {
		got := procNetAddr(netip.MustParseAddrPort(tc.in))
		if got != tc.want {
			t.Errorf("procNetAddr(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestFenceInNetns holds connections to a listener in a fresh network namespace: while
// held, a connection attempt gets no answer; after release it connects at once. And
// Listening tells a listener on the address from none.
func TestFenceInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread, and its namespace, die with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Errorf("loopback up: %v", err)
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Errorf("listen: %v", err)
			return
		}
		addr := netip.MustParseAddrPort(ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		f := NFTables{ProcNet: "/proc/thread-self/net"}
		if ok, err := f.Listening(addr); err != nil || !ok {
			t.Errorf("Listening(%s) = %v, %v; want true", addr, ok, err)
		}
		other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), addr.Port())
		if ok, _ := f.Listening(other); ok {
			t.Errorf("Listening(%s) = true for an address nothing listens on", other)
		}
		release, err := f.Hold(addr)
		if err != nil {
			t.Errorf("Hold: %v", err)
			return
		}
		if c, err := net.DialTimeout("tcp", addr.String(), 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("connected to %s while the fence held it", addr)
		}
		if err := release(); err != nil {
			t.Errorf("release: %v", err)
		}
		c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
		if err != nil {
			t.Errorf("after release: %v", err)
		} else {
			c.Close()
		}
		// A fence left behind (a killed checkpointer) is cleared.
		if _, err := f.Hold(addr); err != nil {
			t.Errorf("Hold: %v", err)
		}
		if err := f.Clear(); err != nil {
			t.Errorf("Clear: %v", err)
		}
		if c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second); err != nil {
			t.Errorf("after Clear: %v", err)
		} else {
			c.Close()
		}
		// Each holder clears only its own: init clearing what a killed init left keeps a
		// checkpointer's fence, and the other way round.
		initFence := NFTables{ProcNet: "/proc/thread-self/net", Table: InitTable}
		if _, err := f.Hold(addr); err != nil {
			t.Errorf("Hold: %v", err)
		}
		if err := initFence.Clear(); err != nil {
			t.Errorf("Clear of init's: %v", err)
		}
		if c, err := net.DialTimeout("tcp", addr.String(), 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("clearing init's fence dropped the checkpointer's")
		}
		if err := f.Clear(); err != nil {
			t.Errorf("Clear: %v", err)
		}
		if _, err := initFence.Hold(addr); err != nil {
			t.Errorf("Hold of init's: %v", err)
		}
		if err := initFence.Clear(); err != nil {
			t.Errorf("Clear of init's: %v", err)
		}
		if c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second); err != nil {
			t.Errorf("after clearing init's fence: %v", err)
		} else {
			c.Close()
		}
		ln.Close()
	}()
	<-done
}
