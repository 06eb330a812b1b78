package steer

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelHex prints ip as the kernel does in /proc/net/tcp{,6}: each 32-bit word of the
// address, as it lies in memory, printed as a number.
func kernelHex(ip netip.Addr) string {
	b := ip.AsSlice()
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%08X", binary.NativeEndian.Uint32(b[i:]))
	}
	return s.String()
}

const (
	tcpHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)

// tcpLine is one socket's line of /proc/net/tcp{,6}.
func tcpLine(sl int, local netip.AddrPort, state string, inode uint64) string {
	remote := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if local.Addr().Is6() {
		remote = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	return fmt.Sprintf("%4d: %s:%04X %s:%04X %s 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n",
		sl, kernelHex(local.Addr()), local.Port(), kernelHex(remote.Addr()), remote.Port(), state, inode)
}

// fakeProc writes a proc tree: net/tcp and net/tcp6 (when not empty) and, for each
// pid, fd links to the given targets.
func fakeProc(t *testing.T, tcp, tcp6 string, fds map[string]map[string]string) string {
	t.Helper()
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	if tcp != "" {
		if err := os.WriteFile(filepath.Join(proc, "net", "tcp"), []byte(tcp), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if tcp6 != "" {
		if err := os.WriteFile(filepath.Join(proc, "net", "tcp6"), []byte(tcp6), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pid, links := range fds {
		dir := filepath.Join(proc, pid, "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, target := range links {
			if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return proc
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestListenersFromProc(t *testing.T) {
	tcp := tcpHeader +
		tcpLine(0, ap("127.0.0.1:6443"), "0A", 123) + // ours, held by 100
		tcpLine(1, ap("0.0.0.0:10250"), "0A", 125) + // another port
		tcpLine(2, ap("10.0.0.5:6443"), "0A", 127) + // ours, held by nobody visible
		tcpLine(3, ap("0.0.0.0:6443"), "0A", 0) + // no inode (cannot happen, ignored)
		tcpLine(4, ap("127.0.0.1:6443"), "01", 124) // a connection to the port
	tcp6 := tcp6Header +
		tcpLine(0, ap("[::]:6443"), "0A", 126) + // ours, held by 200 and 300
		tcpLine(1, ap("[::1]:2379"), "0A", 128)
	proc := fakeProc(t, tcp, tcp6, map[string]map[string]string{
		"100":  {"0": "/dev/null", "3": "socket:[123]", "4": "socket:[124]", "5": "socket:[125]", "6": "pipe:[126]"},
		"200":  {"7": "socket:[126]"},
		"300":  {"8": "socket:[126]"},
		"self": {"9": "socket:[127]"}, // not a PID
		"400":  {},                    // a process without the socket
	})
	// A process that ended between listing /proc and reading its fd directory.
	if err := os.Mkdir(filepath.Join(proc, "500"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := Listeners(proc, 6443)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %+v, want the listeners 123 and 126", got)
	}
	if want := (Listener{Inode: 123, PID: 100, FD: 3, Addr: ap("127.0.0.1:6443")}); got[0] != want {
		t.Errorf("first listener %+v, want %+v", got[0], want)
	}
	if got[1].Inode != 126 || got[1].Addr != ap("[::]:6443") ||
		!(got[1].PID == 200 && got[1].FD == 7 || got[1].PID == 300 && got[1].FD == 8) {
		t.Errorf("second listener %+v, want inode 126 on [::]:6443 held by 200 (fd 7) or 300 (fd 8)", got[1])
	}

	// The same sockets through the listing alone, including the one nobody holds.
	addrs, err := listening(proc, 6443)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]netip.AddrPort{123: ap("127.0.0.1:6443"), 126: ap("[::]:6443"), 127: ap("10.0.0.5:6443")}
	if !maps.Equal(want, addrs) {
		t.Errorf("listening: %v, want %v", addrs, want)
	}
	if got, err := Listeners(proc, 2379); err != nil || len(got) != 0 {
		t.Errorf("port 2379, held by nobody: %+v, %v", got, err)
	}
}

func TestListenersStopAtTheFirstConnection(t *testing.T) {
	// The kernel prints every listener before any other socket, so one after a
	// connection is not read (a kernel never prints it there).
	tcp := tcpHeader +
		tcpLine(0, ap("127.0.0.1:6443"), "0A", 1) +
		tcpLine(1, ap("127.0.0.1:6443"), "06", 2) + // TIME_WAIT
		tcpLine(2, ap("127.0.0.1:6443"), "0A", 3)
	proc := fakeProc(t, tcp, "", nil)
	got, err := listening(proc, 6443)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[uint64]netip.AddrPort{1: ap("127.0.0.1:6443")}; !maps.Equal(want, got) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestListenersErrors(t *testing.T) {
	// A kernel without IPv6 has no tcp6: no error.
	proc := fakeProc(t, tcpHeader+tcpLine(0, ap("0.0.0.0:6443"), "0A", 9), "", map[string]map[string]string{"1": {"3": "socket:[9]"}})
	if got, err := Listeners(proc, 6443); err != nil || len(got) != 1 {
		t.Errorf("without tcp6: %+v, %v", got, err)
	}
	for name, tcp := range map[string]string{
		"no net/tcp":     "",
		"too few fields": tcpHeader + "   0: 0100007F:192B 00000000:0000 0A\n",
		"bad address":    tcpHeader + strings.Replace(tcpLine(0, ap("127.0.0.1:6443"), "0A", 9), kernelHex(netip.MustParseAddr("127.0.0.1")), "XYZ", 1),
		"bad port":       tcpHeader + strings.Replace(tcpLine(0, ap("127.0.0.1:6443"), "0A", 9), ":192B", ":1G2B", 1),
		"bad inode":      tcpHeader + strings.Replace(tcpLine(0, ap("127.0.0.1:6443"), "0A", 9), " 9 1 ", " x 1 ", 1),
	} {
		proc := fakeProc(t, tcp, "", nil)
		if got, err := Listeners(proc, 6443); err == nil {
			t.Errorf("%s: %+v, want an error", name, got)
		}
	}
}

func TestParseAddr(t *testing.T) {
	for _, want := range []string{"127.0.0.1:6443", "0.0.0.0:1", "10.1.2.3:65535", "[::]:6443", "[::1]:6443", "[fd00:1:2::abcd]:443", "[::ffff:10.0.0.1]:80"} {
		a := ap(want)
		text := fmt.Sprintf("%s:%04X", kernelHex(a.Addr()), a.Port())
		got, err := parseAddr(text)
		if err != nil || got != a {
			t.Errorf("parseAddr(%q) = %v, %v; want %v", text, got, err, a)
		}
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 { // little-endian: the kernel's text is fixed
		if got, err := parseAddr("0100007F:192B"); err != nil || got != ap("127.0.0.1:6443") {
			t.Errorf("0100007F:192B = %v, %v", got, err)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:", "01007F:192B", "0100007F:10000", "0100007G:192B"} {
		if got, err := parseAddr(bad); err == nil {
			t.Errorf("parseAddr(%q) = %v, want an error", bad, got)
		}
	}
}

func TestSocketInode(t *testing.T) {
	for target, want := range map[string]uint64{"socket:[123]": 123, "socket:[0]": 0} {
		if got, ok := socketInode(target); !ok || got != want {
			t.Errorf("%q: %d, %v", target, got, ok)
		}
	}
	for _, target := range []string{"pipe:[123]", "socket:[12", "socket:123]", "socket:[x]", "/dev/null"} {
		if got, ok := socketInode(target); ok {
			t.Errorf("%q: %d, want none", target, got)
		}
	}
}

// inodeOf is the inode of the socket fd.
func inodeOf(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestListenersAndDuplicateOfThisProcess(t *testing.T) {
	g := newGroup(t, 2)
	got, err := Listeners("/proc", g.port)
	if err != nil {
		t.Fatal(err)
	}
	var want []Listener
	for _, fd := range g.fds {
		want = append(want, Listener{Inode: inodeOf(t, fd), PID: os.Getpid(), FD: fd, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(g.port))})
	}
	if want[0].Inode > want[1].Inode {
		want[0], want[1] = want[1], want[0]
	}
	if !slices.Equal(want, got) {
		t.Fatalf("Listeners: %+v, want %+v", got, want)
	}

	for _, l := range got {
		fd, err := Duplicate(l)
		if err != nil {
			t.Fatal(err)
		}
		if fd == l.FD {
			t.Errorf("Duplicate returned the original descriptor %d", fd)
		}
		if inodeOf(t, fd) != l.Inode {
			t.Errorf("the copy of %+v is socket %d", l, inodeOf(t, fd))
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		if port := sa.(*unix.SockaddrInet4).Port; port != g.port {
			t.Errorf("the copy listens on port %d, want %d", port, g.port)
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
			t.Errorf("the copy is not listening: %d, %v", v, err)
		}
		unix.Close(fd)
	}

	// The descriptor no longer holds that socket, or none at all: refused.
	wrong := got[0]
	wrong.FD = got[1].FD
	if fd, err := Duplicate(wrong); err == nil {
		unix.Close(fd)
		t.Errorf("Duplicate of %+v, whose descriptor holds another socket: no error", wrong)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if fd, err := Duplicate(Listener{Inode: got[0].Inode, PID: os.Getpid(), FD: int(devnull.Fd())}); err == nil {
		unix.Close(fd)
		t.Error("Duplicate of /dev/null: no error")
	}
	if fd, err := Duplicate(Listener{Inode: got[0].Inode, PID: os.Getpid(), FD: 1 << 20}); err == nil {
		unix.Close(fd)
		t.Error("Duplicate of a descriptor that is not open: no error")
	}

	// A listener that closes leaves the listing.
	g.listeners[0].Close()
	left, err := listening("/proc", g.port)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := left[inodeOf(t, g.fds[1])]; !ok || len(left) != 1 {
		t.Errorf("after one closed: %v", left)
	}
}

func TestPodUIDFromCgroup(t *testing.T) {
	const uid = "6f1c0b8e-5a2b-4c3d-9e8f-0123456789ab"
	for _, tc := range []struct {
		name, content, want string
	}{
		{"cgroup v2, cgroupfs driver", "0::/kubepods/burstable/pod" + uid + "/0123abcd\n", uid},
		{"cgroup v2, systemd driver", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c0b8e_5a2b_4c3d_9e8f_0123456789ab.slice/cri-containerd-0123abcd.scope\n", uid},
		{"guaranteed pod, systemd driver", "0::/kubepods.slice/kubepods-pod6f1c0b8e_5a2b_4c3d_9e8f_0123456789ab.slice/cri-containerd-0123abcd.scope\n", uid},
		{"cgroup v1 under a node's prefix", "9:name=systemd:/\n4:memory:/node1/kubepods/besteffort/pod" + uid + "/0123abcd\n1:cpu:/\n", uid},
		{"relative to the reader's cgroup namespace", "0::/../../pod" + uid + "/0123abcd\n", uid},
		{"a process outside any pod", "0::/system.slice/containerd.service\n", ""},
		{"a word that starts with pod", "0::/podman/pod" + uid + "x/abc\n", ""},
		{"a name that ends in pod and a UID", "0::/mypod" + uid + "/abc\n", ""},
		{"upper-case is not how the kubelet writes it", "0::/kubepods/pod" + strings.ToUpper(uid) + "/abc\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podUIDFromCgroup(tc.content); got != tc.want {
				t.Errorf("podUIDFromCgroup(%q) = %q, want %q", tc.content, got, tc.want)
			}
		})
	}
}

func TestPodUIDOfProcess(t *testing.T) {
	proc := t.TempDir()
	const uid = "6f1c0b8e-5a2b-4c3d-9e8f-0123456789ab"
	if err := os.MkdirAll(filepath.Join(proc, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "42", "cgroup"), []byte("0::/kubepods/pod"+uid+"/c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := PodUID(proc, 42); got != uid {
		t.Errorf("PodUID(42) = %q, want %q", got, uid)
	}
	if got := PodUID(proc, 43); got != "" {
		t.Errorf("PodUID of a process that is gone = %q, want \"\"", got)
	}
}
