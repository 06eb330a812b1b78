package handover

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServingProbe finds out which process answered a request on a port that several
// processes share with SO_REUSEPORT (the temporary and the self-hosted kube-apiserver
// during the hand-over). The kernel spreads new connections over the listeners; the probe
// opens connections until one lands in the wanted pod, then asks that very connection
// for /readyz. The pod's readiness probe cannot tell the two apart: this can.
type ServingProbe struct {
	// Addr is host:port of the shared listener, e.g. 127.0.0.1:6443.
	Addr string
	// TLS verifies the server (the cluster CA).
	TLS *tls.Config
	// Proc is the proc file system, "/proc" on a host.
	Proc string
	// Attempts is how many connections to try per call.
	Attempts int
}

// ReadyzServedBy reports whether a process of the pod with uid answered /readyz with 200.
func (p ServingProbe) ReadyzServedBy(ctx context.Context, podUID string) (bool, error) {
	var last error
	for i := 0; i < p.Attempts; i++ {
		ok, mine, err := p.once(ctx, podUID)
		if err != nil {
			last = err
			continue
		}
		if mine {
			return ok, nil
		}
	}
	if last != nil {
		return false, last
	}
	return false, nil
}

// once makes one connection; mine says whether the pod's process accepted it, ok whether
// /readyz answered 200 on it.
func (p ServingProbe) once(ctx context.Context, podUID string) (ok, mine bool, err error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", p.Addr)
	if err != nil {
		return false, false, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	conn := tls.Client(raw, p.TLS)
	// After the handshake the server has accepted the connection: its socket is in the
	// accepting process's file table.
	if err := conn.HandshakeContext(ctx); err != nil {
		return false, false, err
	}
	local := raw.LocalAddr().(*net.TCPAddr)
	_, portStr, _ := net.SplitHostPort(p.Addr)
	port, _ := strconv.Atoi(portStr)
	pid, err := SocketOwner(p.Proc, port, local.Port)
	if err != nil {
		return false, false, err
	}
	mine, err = PIDInPod(p.Proc, pid, podUID)
	if err != nil || !mine {
		return false, false, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+p.Addr+"/readyz", nil)
	if err := req.Write(conn); err != nil {
		return false, true, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return false, true, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, true, nil
}

// SocketOwner returns the pid of the process holding the server side of the TCP
// connection from peerPort to localPort, searching the caller's network namespace.
func SocketOwner(proc string, serverPort, peerPort int) (int, error) {
	inode := ""
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		data, err := os.ReadFile(filepath.Join(proc, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 {
				continue
			}
			if hexPort(fl[1]) == serverPort && hexPort(fl[2]) == peerPort && fl[9] != "0" {
				inode = fl[9]
			}
		}
	}
	if inode == "" {
		return 0, fmt.Errorf("no socket for the connection from port %d to %d", peerPort, serverPort)
	}
	target := "socket:[" + inode + "]"
	pids, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	for _, e := range pids {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(proc, e.Name(), "fd", fd.Name())); err == nil && l == target {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds socket %s", inode)
}

func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseUint(addr[i+1:], 16, 32)
	if err != nil {
		return -1
	}
	return int(p)
}

// PIDInPod reports whether pid runs in the pod with uid, by its cgroup path (the
// kubelet's cgroupfs driver names pod cgroups pod<uid>, the systemd driver
// pod<uid with underscores>).
func PIDInPod(proc string, pid int, podUID string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return false, err
	}
	s := string(data)
	return strings.Contains(s, "pod"+podUID) || strings.Contains(s, "pod"+strings.ReplaceAll(podUID, "-", "_")), nil
}
