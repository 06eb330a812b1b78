package framework

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// agentArg is the first argument that turns a program using the harness into its agent.
const agentArg = "__selfkube-node-agent"

// systemPath is the PATH of every process the harness starts, on the host and in nodes.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunAgentIfRequested runs the node-side role this process was re-executed for, and exits;
// it returns at once when the process is not an agent. Call it first in main and TestMain.
//
// Roles:
//
//	cgexec NAME -- ARGV...         join node NAME's cgroups, then exec ARGV
//	holder NAME DIR                (inside new namespaces) mount the node's filesystems, then hold them
//	supervise SERVICE WAITFOR -- ARGV...  run ARGV again and again, once WAITFOR exists ("" = at once)
func RunAgentIfRequested() {
	if len(os.Args) < 3 || os.Args[1] != agentArg {
		return
	}
	var err error
	args := os.Args[3:]
	switch os.Args[2] {
	case "cgexec":
		err = agentCgexec(args)
	case "holder":
		err = agentHolder(args)
	case "supervise":
		err = agentSupervise(args)
	default:
		err = fmt.Errorf("unknown agent role %q", os.Args[2])
	}
	fmt.Fprintf(os.Stderr, "selfkube node agent %s: %v\n", os.Args[2], err)
	os.Exit(1)
}

// splitDash splits "A B -- C D" into [A B] and [C D].
func splitDash(args []string) ([]string, []string, error) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:], nil
		}
	}
	return nil, nil, errors.New("missing -- before the command")
}

// agentCgexec puts this process into the node's cgroups and replaces it with the command, so
// that the command and everything it starts is accounted to the node from its first
// instruction (nsenter --cgroup alone would leave it in the caller's cgroups).
func agentCgexec(args []string) error {
	pre, argv, err := splitDash(args)
	if err != nil || len(pre) != 1 || len(argv) == 0 {
		return fmt.Errorf("usage: cgexec NAME -- ARGV... (%v)", err)
	}
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	if err := (cgroups{hs}).join(pre[0], os.Getpid()); err != nil {
		return err
	}
	path, err := lookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

// agentHolder runs as the first process of a node's new mount, UTS and cgroup namespaces (and
// in its network namespace). It builds the node's view of the filesystem, records its pid
// (what every later command enters), and then holds the namespaces open.
func agentHolder(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: holder NAME DIR")
	}
	name, dir := args[0], args[1]
	if err := syscall.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("setting hostname: %w", err)
	}
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	// The host's sysfs shows the host's interfaces and its whole cgroup tree. A fresh sysfs
	// shows this network namespace; the cgroup hierarchies mounted again from inside the new
	// cgroup namespace have the node's cgroup as their root, so the kubelet's /kubepods is
	// per node.
	if err := syscall.Unmount("/sys", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting the host's /sys: %w", err)
	}
	if err := syscall.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mounting sysfs: %w", err)
	}
	if err := syscall.Mount("cgroup", "/sys/fs/cgroup", "tmpfs", 0, "mode=755"); err != nil {
		return fmt.Errorf("mounting /sys/fs/cgroup: %w", err)
	}
	for _, h := range hs {
		if err := os.MkdirAll(h.mount, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", h.mount, err)
		}
		if err := syscall.Mount("cgroup", h.mount, "cgroup", 0, h.options); err != nil {
			return fmt.Errorf("mounting cgroup %s at %s: %w", h.options, h.mount, err)
		}
	}
	for _, d := range stateDirs {
		if err := bind(filepath.Join(dir, d), "/"+d); err != nil {
			return err
		}
	}
	for _, f := range []string{"hosts", "resolv.conf"} {
		if err := bind(filepath.Join(dir, f), "/etc/"+f); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "holder.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("recording holder pid: %w", err)
	}
	fmt.Printf("holder of %s ready, pid %d\n", name, os.Getpid())
	sleep, err := lookPath("sleep")
	if err != nil {
		return err
	}
	return syscall.Exec(sleep, []string{"sleep", "infinity"}, os.Environ())
}

func bind(src, dst string) error {
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting %s on %s: %w", src, dst, err)
	}
	return nil
}

// runDir is where supervisors record service starts, inside the node (/run is wiped on boot).
const runDir = "/run/selfkube-node"

// agentSupervise is the node's "systemd" for one service: Restart=always with a 1 s delay,
// and a start marker (unix nanoseconds) in /run/selfkube-node/SERVICE.started that the
// benchmarks read.
func agentSupervise(args []string) error {
	pre, argv, err := splitDash(args)
	if err != nil || len(pre) != 2 || len(argv) == 0 {
		return fmt.Errorf("usage: supervise SERVICE WAITFOR -- ARGV... (%v)", err)
	}
	service, waitFor := pre[0], pre[1]
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", runDir, err)
	}
	waiting := false
	for {
		if waitFor != "" {
			if _, err := os.Stat(waitFor); err != nil {
				if !waiting {
					fmt.Printf("=== %s waits for %s\n", service, waitFor)
					waiting = true
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
		}
		waiting = false
		start := time.Now()
		_ = os.WriteFile(filepath.Join(runDir, service+".started"), []byte(strconv.FormatInt(start.UnixNano(), 10)), 0o644)
		fmt.Printf("=== %s start %s\n", service, start.Format(time.RFC3339Nano))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Start()
		if err == nil {
			// What `systemctl restart SERVICE` is on a node: kill $(cat …/SERVICE.pid).
			_ = os.WriteFile(filepath.Join(runDir, service+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
			err = cmd.Wait()
		}
		fmt.Printf("=== %s exited after %s: %v\n", service, time.Since(start).Round(time.Millisecond), err)
		time.Sleep(time.Second)
	}
}

// lookPath finds a program in the system PATH plus the PATH of the environment.
func lookPath(file string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH") + ":" + systemPath) {
		p := filepath.Join(d, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", file)
}

// run runs a host command and returns its output in the error when it fails.
func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

// output runs a host command and returns its combined output.
func output(name string, args ...string) (string, error) {
	path, err := lookPath(name)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.Env = append(os.Environ(), "PATH="+systemPath)
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return buf.String(), nil
}
