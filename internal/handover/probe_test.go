package handover

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestSocketOwnerFindsThisProcess connects to a listener of this very process and
// expects the probe to name this process as the one holding the server side.
func TestSocketOwnerFindsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("no /proc here")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	defer sc.Close()
	pid, err := SocketOwner("/proc", ln.Addr().(*net.TCPAddr).Port, c.LocalAddr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Errorf("owner pid %d, want this process %d", pid, os.Getpid())
	}
	if _, err := SocketOwner("/proc", ln.Addr().(*net.TCPAddr).Port, 1); err == nil {
		t.Error("a connection that does not exist was found")
	}
}

func TestPIDInPod(t *testing.T) {
	proc := t.TempDir()
	uid := "0f3c2a8e-1b2c-4d5e-8f90-123456789abc"
	write := func(pid int, cgroup string) {
		d := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup"), []byte(cgroup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(10, "12:pids:/kubepods/burstable/pod"+uid+"/abc\n")
	write(11, "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f3c2a8e_1b2c_4d5e_8f90_123456789abc.slice/cri-containerd-x.scope\n")
	write(12, "12:pids:/kubepods/burstable/pod11111111-1b2c-4d5e-8f90-123456789abc/abc\n")
	for pid, want := range map[int]bool{10: true, 11: true, 12: false} {
		got, err := PIDInPod(proc, pid, uid)
		if err != nil || got != want {
			t.Errorf("pid %d: %v %v, want %v", pid, got, err, want)
		}
	}
}
