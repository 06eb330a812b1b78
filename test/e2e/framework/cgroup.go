package framework

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one cgroup v1 hierarchy of the host, e.g. /sys/fs/cgroup/cpu.
type hierarchy struct {
	// mount is where the host mounts it.
	mount string
	// options are the mount options that select it again inside a node: "cpu",
	// "cpu,cpuacct", "none,name=systemd".
	options string
}

// knownControllers are the cgroup v1 mount options that name a controller (everything else
// in a cgroup mount's options is a generic mount flag such as rw or relatime).
var knownControllers = map[string]bool{
	"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "devices": true,
	"freezer": true, "net_cls": true, "net_prio": true, "blkio": true, "perf_event": true,
	"hugetlb": true, "pids": true, "rdma": true, "misc": true,
}

// cgroupHierarchies lists the host's cgroup v1 hierarchies from /proc/self/mounts.
func cgroupHierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	return parseCgroupMounts(f)
}

// parseCgroupMounts reads the cgroup v1 hierarchies from a mount table.
func parseCgroupMounts(r io.Reader) ([]hierarchy, error) {
	var hs []hierarchy
	seen := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 4 || fields[2] != "cgroup" || seen[fields[1]] {
			continue
		}
		var opts []string
		for _, o := range strings.Split(fields[3], ",") {
			if knownControllers[o] {
				opts = append(opts, o)
			} else if strings.HasPrefix(o, "name=") {
				opts = append([]string{"none"}, append(opts, o)...)
			}
		}
		if len(opts) == 0 {
			continue
		}
		seen[fields[1]] = true
		hs = append(hs, hierarchy{mount: fields[1], options: strings.Join(opts, ",")})
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	if len(hs) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy is mounted: the harness needs a cgroup v1 (hybrid) host")
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].mount < hs[j].mount })
	return hs, nil
}

// has reports whether the hierarchy carries controller c.
func (h hierarchy) has(c string) bool {
	for _, o := range strings.Split(h.options, ",") {
		if o == c {
			return true
		}
	}
	return false
}

// nodeCgroup is the host path of node name's cgroup in hierarchy h.
func (h hierarchy) nodeCgroup(name string) string {
	return filepath.Join(h.mount, cgroupParent, name)
}

// cgroups operates on the per-node cgroups of every hierarchy.
type cgroups struct{ hs []hierarchy }

func (c cgroups) find(controller string) (hierarchy, bool) {
	for _, h := range c.hs {
		if h.has(controller) {
			return h, true
		}
	}
	return hierarchy{}, false
}

// create makes /selfkube-e2e/NAME in every hierarchy. A new v1 cpuset cgroup starts with no
// CPUs and no memory nodes, so it gets its parent's.
func (c cgroups) create(name string) error {
	for _, h := range c.hs {
		for _, d := range []string{filepath.Join(h.mount, cgroupParent), h.nodeCgroup(name)} {
			if err := os.Mkdir(d, 0o755); err != nil {
				if os.IsExist(err) {
					continue
				}
				return fmt.Errorf("creating cgroup %s: %w", d, err)
			}
			if h.has("cpuset") {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
					if err != nil {
						return fmt.Errorf("reading parent %s: %w", f, err)
					}
					if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
						return fmt.Errorf("setting %s of %s: %w", f, d, err)
					}
				}
			}
		}
	}
	return nil
}

// join moves process pid (all its threads) into the node's cgroup of every hierarchy.
func (c cgroups) join(name string, pid int) error {
	for _, h := range c.hs {
		p := filepath.Join(h.nodeCgroup(name), "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving pid %d into %s: %w", pid, p, err)
		}
	}
	return nil
}

// pids lists every process in the node's subtree of the pids hierarchy (or, without one,
// the freezer hierarchy): that is every process of the node, containers included.
func (c cgroups) pids(name string) ([]int, error) {
	h, ok := c.find("pids")
	if !ok {
		if h, ok = c.find("freezer"); !ok {
			return nil, errors.New("neither a pids nor a freezer cgroup hierarchy is mounted")
		}
	}
	return subtreePIDs(h.nodeCgroup(name))
}

// subtreePIDs reads cgroup.procs of dir and every cgroup below it.
func subtreePIDs(dir string) ([]int, error) {
	seen := map[int]bool{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // the cgroup went away while we walked
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				seen[pid] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing processes of %s: %w", dir, err)
	}
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out, nil
}

// kill stops every process of the node at once, as a power cut would: freeze the subtree so
// nothing can fork or restart, SIGKILL every process, thaw so the kills are delivered, and
// wait until the subtree is empty.
func (c cgroups) kill(name string) error {
	fz, hasFreezer := c.find("freezer")
	state := filepath.Join(fz.nodeCgroup(name), "freezer.state")
	for attempt := 0; attempt < 5; attempt++ {
		pids, err := c.pids(name)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		frozen := hasFreezer && os.WriteFile(state, []byte("FROZEN"), 0o644) == nil
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL) // gone already is fine
		}
		if frozen {
			if err := os.WriteFile(state, []byte("THAWED"), 0o644); err != nil {
				return fmt.Errorf("thawing %s: %w", state, err)
			}
		}
		for i := 0; i < 100; i++ {
			if pids, _ := c.pids(name); len(pids) == 0 {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pids, _ := c.pids(name)
	return fmt.Errorf("processes of node %s survive SIGKILL: %v; look for processes in D state (cat /proc/PID/stack)", name, pids)
}

// remove deletes the node's cgroup subtree in every hierarchy (the kubelet makes children
// such as /kubepods, which must go first). The kernel refuses while a dying process is still
// accounted, so it retries for a while.
func (c cgroups) remove(name string) error {
	var errs []error
	for _, h := range c.hs {
		if err := removeCgroupTree(h.nodeCgroup(name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes dir and every cgroup below it, deepest first.
func removeCgroupTree(dir string) error {
	var last error
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return nil
		}
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		last = nil
		for j := len(dirs) - 1; j >= 0; j-- {
			if err := syscall.Rmdir(dirs[j]); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = err
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, last)
}
