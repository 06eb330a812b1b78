package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func buildPause(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pause")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pause: %v\n%s", err, out)
	}
	return bin
}

// waitExit waits for cmd to exit, failing the test if it has not after a generous bound.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("pause did not exit")
		return nil
	}
}

func TestExitsOnSignal(t *testing.T) {
	bin := buildPause(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// A child the signal arrives to before Notify would die of it: give main a moment.
			time.Sleep(100 * time.Millisecond)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := waitExit(t, cmd); err != nil {
				t.Errorf("pause after %v: %v, want a clean exit", sig, err)
			}
		})
	}
}

// TestReapsOrphans runs pause as PID 1 of a new PID namespace, as in a pod sandbox, leaves an
// orphan in that namespace and checks that no zombie stays behind once it exits.
func TestReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	bin := buildPause(t)
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pause in a PID namespace: %v", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		waitExit(t, cmd)
	}()
	time.Sleep(100 * time.Millisecond)
	pid := cmd.Process.Pid

	// sh starts a short sleep and exits at once: the sleep is re-parented to pause.
	orphan := exec.Command("nsenter", "--target", itoa(pid), "--pid", "--", "/bin/sh", "-c", "sleep 0.2 & exit 0")
	if out, err := orphan.CombinedOutput(); err != nil {
		t.Fatalf("leaving an orphan: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		children := childStates(t, pid)
		if len(children) == 0 {
			return // the orphan exited and was reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of pause still there (state by pid: %v), want them reaped", children)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// childStates maps the pid of each child of parent to its state letter (Z for a zombie).
func childStates(t *testing.T, parent int) map[string]string {
	t.Helper()
	children, err := os.ReadFile(filepath.Join("/proc", itoa(parent), "task", itoa(parent), "children"))
	if err != nil {
		t.Fatalf("listing the children of pause: %v", err)
	}
	states := map[string]string{}
	for _, child := range strings.Fields(string(children)) {
		stat, err := os.ReadFile(filepath.Join("/proc", child, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ...: the state follows the last ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		states[child] = fields[0]
	}
	return states
}

func itoa(i int) string { return strconv.Itoa(i) }
