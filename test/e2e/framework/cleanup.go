package framework

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Cleanup removes everything a harness run may have left behind, including the leftovers of
// a killed run that no longer has state directories: node processes, cgroups, veths,
// network namespaces, the bridge (and with it the pod routes), mounts, and node state.
func (h *Harness) Cleanup() error {
	var errs []error
	names := map[string]bool{}
	for _, hi := range h.cg.hs {
		es, _ := os.ReadDir(filepath.Join(hi.mount, cgroupParent))
		for _, e := range es {
			if e.IsDir() {
				names[e.Name()] = true
			}
		}
	}
	nodes, _ := h.Nodes()
	for _, n := range nodes {
		names[n.Name] = true
	}
	for name := range names {
		if err := h.cg.kill(name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, pid := range agentProcesses() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for name := range names {
		if err := h.cg.remove(name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, hi := range h.cg.hs {
		if err := removeCgroupTree(filepath.Join(hi.mount, cgroupParent)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range ourLinks() {
		if l != BridgeName {
			if err := run("ip", "link", "del", l); err != nil && linkExists(l) {
				errs = append(errs, err)
			}
		}
	}
	for _, ns := range ourNetns() {
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if linkExists(BridgeName) {
		if err := run("ip", "link", "del", BridgeName); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range h.ourMounts() {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	if err := os.RemoveAll(h.cfg.nodesDir()); err != nil {
		errs = append(errs, fmt.Errorf("deleting node state: %w", err))
	}
	h.mu.Lock()
	h.nodes = map[string]*Node{}
	h.mu.Unlock()
	return errors.Join(errs...)
}

// Leftovers lists whatever of the harness's is still on the machine: an empty list means
// the machine is as clean as before the first Up.
func (h *Harness) Leftovers() []string {
	var out []string
	for _, hi := range h.cg.hs {
		d := filepath.Join(hi.mount, cgroupParent)
		if _, err := os.Stat(d); err == nil {
			pids, _ := subtreePIDs(d)
			out = append(out, fmt.Sprintf("cgroup %s (processes %v)", d, pids))
		}
	}
	for _, pid := range agentProcesses() {
		out = append(out, fmt.Sprintf("process %d (node agent)", pid))
	}
	for _, l := range ourLinks() {
		out = append(out, "link "+l)
	}
	for _, ns := range ourNetns() {
		out = append(out, "netns "+ns)
	}
	for _, m := range h.ourMounts() {
		out = append(out, "mount "+m)
	}
	if es, _ := os.ReadDir(h.cfg.nodesDir()); len(es) > 0 {
		out = append(out, fmt.Sprintf("node state in %s (%d nodes)", h.cfg.nodesDir(), len(es)))
	}
	if b, err := os.ReadFile("/proc/net/route"); err == nil && bytes.Contains(b, []byte(BridgeName)) {
		out = append(out, "routes via "+BridgeName)
	}
	return out
}

// ourMounts lists host mounts that belong to the harness: network namespace handles and
// anything below the work directory.
func (h *Harness) ourMounts() []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		m := fields[1]
		if strings.HasPrefix(m, "/run/netns/"+netnsPrefix) || strings.HasPrefix(m, h.cfg.WorkDir+"/") {
			out = append(out, m)
		}
	}
	return out
}

// agentProcesses lists the pids of running node agents (holders exec sleep and are found
// through their cgroups instead).
func agentProcesses() []int {
	es, _ := os.ReadDir("/proc")
	var out []int
	self := os.Getpid()
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[1] == agentArg {
			out = append(out, pid)
		}
	}
	return out
}
