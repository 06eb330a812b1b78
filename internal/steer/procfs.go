package steer

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Listener is a listening TCP socket of the port and one process that holds it.
type Listener struct {
	// Inode is the socket's inode number, its name in /proc/net/tcp and /proc/PID/fd.
	Inode uint64
	// PID and FD are a process that holds the socket and its descriptor there (the first
	// found when several do, as after a fork).
	PID, FD int
	// Addr is the address the socket is bound to (0.0.0.0 or :: for every address).
	Addr netip.AddrPort
}

// Listeners returns the listening TCP sockets of port in the network namespace whose
// proc is PROC (usually /proc), each with a process that holds it, ordered by inode. It
// reads PROC/net/tcp and PROC/net/tcp6 for the sockets, then PROC/[0-9]*/fd/* for their
// holders; a socket no visible process holds (one of another PID namespace) is left out,
// and so are processes that end or deny access meanwhile.
func Listeners(proc string, port int) ([]Listener, error) {
	addrs, err := listening(proc, port)
	if err != nil {
		return nil, err
	}
	want := make(map[uint64]bool, len(addrs))
	for inode := range addrs {
		want[inode] = true
	}
	var ls []Listener
	for inode, o := range holders(proc, want) {
		ls = append(ls, Listener{Inode: inode, PID: o.pid, FD: o.fd, Addr: addrs[inode]})
	}
	slices.SortFunc(ls, func(a, b Listener) int { return compareInode(a.Inode, b.Inode) })
	return ls, nil
}

func compareInode(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// tcpListen is the state of a listening socket in /proc/net/tcp (TCP_LISTEN).
const tcpListen = "0A"

// listening returns the inodes of the sockets listening on port, with their addresses,
// from PROC/net/tcp and PROC/net/tcp6 (which a kernel without IPv6 lacks).
//
// The kernel prints its listening sockets first (it walks its listening hash before its
// established one, since Linux 4.4 also for half-open connections), so reading stops at
// the first socket in any other state: on a busy node the many connections after the
// listeners cost nothing.
func listening(proc string, port int) (map[uint64]netip.AddrPort, error) {
	found := map[uint64]netip.AddrPort{}
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(proc, "net", name))
		if err != nil {
			if name == "tcp6" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading the listening sockets: %w", err)
		}
		err = parseTCP(f, port, found)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the listening sockets: %s: %w", f.Name(), err)
		}
	}
	return found, nil
}

// parseTCP adds the listeners on port of one /proc/net/tcp{,6} text to found.
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123 1 …
//
// An address is the hex of the kernel's 32-bit words in host byte order; the port is
// plain hex.
func parseTCP(r io.Reader, port int, found map[uint64]netip.AddrPort) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 10 {
			return fmt.Errorf("line %q: too few fields", sc.Text())
		}
		if fields[3] != tcpListen {
			return nil // the listeners are over (see listening)
		}
		addr, err := parseAddr(fields[1])
		if err != nil {
			return fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		if int(addr.Port()) != port {
			continue
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return fmt.Errorf("line %q: inode: %w", sc.Text(), err)
		}
		if inode != 0 {
			found[inode] = addr
		}
	}
	return sc.Err()
}

// parseAddr parses "0100007F:192B" (127.0.0.1:6443 on a little-endian machine) and its
// 32-hex-digit IPv6 form.
func parseAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: not 8 or 32 hex digits", s)
	}
	// Each 32-bit word was printed as a number: put its bytes back in memory order.
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// holder is a process's descriptor of a socket.
type holder struct{ pid, fd int }

// holders finds, for each inode of want, one process descriptor of it among
// PROC/[0-9]*/fd/*. It stops once every inode is found; processes that end or deny
// access are skipped.
func holders(proc string, want map[uint64]bool) map[uint64]holder {
	found := map[uint64]holder{}
	if len(want) == 0 {
		return found
	}
	pids, err := readNames(proc)
	if err != nil {
		return found
	}
	for _, p := range pids {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(proc, p, "fd")
		fds, err := readNames(dir)
		if err != nil {
			continue // ended, a kernel thread, or no access
		}
		for _, f := range fds {
			target, err := os.Readlink(filepath.Join(dir, f))
			if err != nil {
				continue
			}
			inode, ok := socketInode(target)
			if !ok || !want[inode] {
				continue
			}
			if _, dup := found[inode]; dup {
				continue
			}
			fd, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			found[inode] = holder{pid: pid, fd: fd}
			if len(found) == len(want) {
				return found
			}
		}
	}
	return found
}

// readNames lists a directory without sorting it.
func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// socketInode parses a /proc/PID/fd link "socket:[123]".
func socketInode(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	inode, err := strconv.ParseUint(s, 10, 64)
	return inode, err == nil
}

// Duplicate returns a descriptor of l's socket in this process, which the caller closes
// (pidfd_getfd: Linux 5.6, and ptrace access to l.PID, CAP_SYS_PTRACE for another
// user's or a more privileged process). It fails if l.FD of l.PID is no longer l's
// socket, as when the process ended and its PID or descriptor was reused.
func Duplicate(l Listener) (int, error) {
	pidfd, err := unix.PidfdOpen(l.PID, 0)
	if err != nil {
		return -1, fmt.Errorf("opening process %d: %w", l.PID, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, l.FD, 0)
	if err != nil {
		return -1, fmt.Errorf("taking descriptor %d of process %d: %w", l.FD, l.PID, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("descriptor %d of process %d: %w", l.FD, l.PID, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != l.Inode {
		unix.Close(fd)
		return -1, fmt.Errorf("descriptor %d of process %d is no longer socket %d", l.FD, l.PID, l.Inode)
	}
	return fd, nil
}

// ephemeralProbePorts returns the probe ports base…base+Slots-1 the kernel may give a
// connection as its source port: those in PROC/sys/net/ipv4/ip_local_port_range and not
// in ip_local_reserved_ports. A local client that gets one is steered like a probe: to
// one particular listener, ready or not, or refused if that slot is empty.
func ephemeralProbePorts(proc string, base uint16) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(proc, "sys", "net", "ipv4", "ip_local_port_range"))
	if err != nil {
		return nil, err
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return nil, fmt.Errorf("ip_local_port_range %q: %w", b, err)
	}
	reserved := func(int) bool { return false }
	if b, err := os.ReadFile(filepath.Join(proc, "sys", "net", "ipv4", "ip_local_reserved_ports")); err == nil {
		var ranges [][2]int
		for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
			if r == "" {
				continue
			}
			first, last, isRange := strings.Cut(r, "-")
			if !isRange {
				last = first
			}
			a, err1 := strconv.Atoi(first)
			z, err2 := strconv.Atoi(last)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("ip_local_reserved_ports %q: %w", b, err)
			}
			ranges = append(ranges, [2]int{a, z})
		}
		reserved = func(p int) bool {
			return slices.ContainsFunc(ranges, func(r [2]int) bool { return p >= r[0] && p <= r[1] })
		}
	}
	var ports []int
	for p := int(base); p < int(base)+Slots; p++ {
		if p >= lo && p <= hi && !reserved(p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// PodUID returns the UID of the pod whose container runs process pid, read from
// PROC/PID/cgroup, or "" for a process outside any pod (or one that ended).
func PodUID(proc string, pid int) string {
	data, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	return podUIDFromCgroup(string(data))
}

// podUIDFromCgroup finds the pod in the cgroup paths of /proc/PID/cgroup, as the
// kubelet names pod cgroups with either driver:
//
//	cgroupfs: …/kubepods/burstable/pod6f1c0b8e-5a2b-4c3d-9e8f-0123456789ab/<container>
//	systemd:  …/kubepods-burstable-pod6f1c0b8e_5a2b_4c3d_9e8f_0123456789ab.slice/cri-containerd-<container>.scope
//
// The paths may be relative to the reader's cgroup namespace ("/../../kubepods…").
func podUIDFromCgroup(content string) string {
	for line := range strings.Lines(content) {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for seg := range strings.SplitSeq(parts[2], "/") {
			seg = strings.TrimSuffix(seg, ".slice")
			i := strings.LastIndex(seg, "pod")
			if i < 0 || (i > 0 && seg[i-1] != '-') {
				continue
			}
			uid := strings.ReplaceAll(seg[i+len("pod"):], "_", "-")
			if validUID(uid) {
				return uid
			}
		}
	}
	return ""
}

// validUID says whether s is a UUID in its 8-4-4-4-12 hexadecimal form.
func validUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
