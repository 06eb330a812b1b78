package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stateDirs are the directories of a node's "disk": bind-mounted inside the node from
// DIR/<dir>, they survive reboots (except run, which a boot starts empty, as a tmpfs would).
var stateDirs = []string{
	"etc/kubernetes", "var/lib/kubelet", "var/lib/containerd", "run", "var/log/pods",
	"var/log/containers", "etc/cni/net.d", "var/lib/etcd", "var/lib/cni", "opt/cni/bin",
	"etc/selfkube", "var/lib/selfkube", "usr/local/bin",
}

// KubeletPath is where a node has its kubelet installed (on its disk: `selfkube upgrade
// node` replaces it there, and a reboot keeps the one installed). The node's own
// /usr/local/bin hides the host's inside the node: nothing a node runs is there (the
// host's containerd and runc are Debian's, in /usr/bin).
const KubeletPath = "/usr/local/bin/kubelet"

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Harness creates and controls nodes on this machine.
type Harness struct {
	cfg   Config
	logf  func(format string, args ...any)
	cg    cgroups
	agent string

	mu    sync.Mutex
	nodes map[string]*Node // nodes this harness brought up or loaded
}

// New returns a harness. logf receives progress lines (t.Logf in tests).
func New(cfg Config, logf func(format string, args ...any)) (*Harness, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	agent, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the harness executable (the node agent): %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	closeInheritedFiles()
	return &Harness{cfg: cfg, logf: logf, cg: cgroups{hs}, agent: agent, nodes: map[string]*Node{}}, nil
}

// Config returns the harness configuration.
func (h *Harness) Config() Config { return h.cfg }

// Node is one simulated machine.
type Node struct {
	Name string
	IP   string
	h    *Harness
	opts UpOptions
}

// Dir is the node's state directory on the host.
func (n *Node) Dir() string { return filepath.Join(n.h.cfg.nodesDir(), n.Name) }

// HostPath maps an absolute path inside the node to the host, for paths in the node's state
// directories (e.g. /etc/kubernetes/admin.conf).
func (n *Node) HostPath(p string) string { return filepath.Join(n.Dir(), p) }

// PodSubnet is the pod network the node's bridge CNI allocates from.
func (n *Node) PodSubnet() string { return PodSubnet(n.IP) }

// Node returns the node called name that an earlier Up created (possibly in another process).
func (h *Harness) Node(name string) (*Node, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, ok := h.nodes[name]; ok {
		return n, nil
	}
	ip, err := os.ReadFile(filepath.Join(h.cfg.nodesDir(), name, "ip"))
	if err != nil {
		return nil, fmt.Errorf("node %s does not exist (%v): create it with `up %s IP`", name, err, name)
	}
	n := &Node{Name: name, IP: strings.TrimSpace(string(ip)), h: h}
	h.nodes[name] = n
	return n, nil
}

// Nodes lists the nodes that have a state directory.
func (h *Harness) Nodes() ([]*Node, error) {
	es, err := os.ReadDir(h.cfg.nodesDir())
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var out []*Node
	for _, e := range es {
		if n, err := h.Node(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// Up creates node name with address ip (on the 172.31.0.0/24 node network) and boots it:
// containerd runs, the cached images are imported, and the kubelet starts as soon as
// /var/lib/kubelet/config.yaml exists (that is, after kubeadm init or join).
func (h *Harness) Up(ctx context.Context, name, ip string) (*Node, error) {
	return h.UpWith(ctx, name, ip, UpOptions{})
}

// UpOptions change how a node is set up.
type UpOptions struct {
	// NoPodNetwork leaves /etc/cni/net.d empty: the cluster brings its own pod network
	// (selfkube's network DaemonSet), and the node is not Ready until it runs.
	NoPodNetwork bool
	// Selfkube is the selfkube binary the node has installed: its kubelet unit runs
	// `selfkube checkpointer boot` before the kubelet, as deploy/systemd's drop-in does.
	Selfkube string
	// KubeletVersion is the kubelet the node has installed at KubeletPath when it is
	// first made (the harness's Kubernetes version when empty), from the cache.
	KubeletVersion string
}

// UpWith is Up with options.
func (h *Harness) UpWith(ctx context.Context, name, ip string, opts UpOptions) (*Node, error) {
	if !validName.MatchString(name) || len(name) > maxNameLen {
		return nil, fmt.Errorf("node name %q: use at most %d lower-case letters, digits and dashes", name, maxNameLen)
	}
	if err := validateAddress(ip); err != nil {
		return nil, err
	}
	if err := h.cfg.Check(); err != nil {
		return nil, err
	}
	n := &Node{Name: name, IP: ip, h: h, opts: opts}
	if n.Running() {
		return nil, fmt.Errorf("node %s is already up: use `down %s` first", name, name)
	}
	others, err := h.Nodes()
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if o.IP == ip && o.Name != name {
			return nil, fmt.Errorf("address %s belongs to node %s: pick another", ip, o.Name)
		}
	}
	h.mu.Lock()
	h.nodes[name] = n
	h.mu.Unlock()
	if err := n.prepare(); err != nil {
		return n, err
	}
	if err := n.boot(ctx); err != nil {
		return n, err
	}
	return n, nil
}

// installKubelet puts the kubelet of the node's version at KubeletPath on its disk,
// unless one is there: what a node runs after an upgrade survives its reboots.
func (n *Node) installKubelet() error {
	dst := n.HostPath(KubeletPath)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	version := n.opts.KubeletVersion
	if version == "" {
		version = n.h.cfg.KubeVersion
	}
	src := filepath.Join(n.h.cfg.CacheDir, "bin", "kubernetes-"+version, "kubelet")
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("installing the kubelet %s on node %s: %w (KUBE_VERSION=%s make components)", version, n.Name, err, version)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst+".tmp", b, 0o755); err != nil {
		return fmt.Errorf("installing the kubelet on node %s: %w", n.Name, err)
	}
	return os.Rename(dst+".tmp", dst)
}

// prepare writes the node's files that outlive boots.
func (n *Node) prepare() error {
	for _, d := range append([]string{"log"}, stateDirs...) {
		if err := os.MkdirAll(filepath.Join(n.Dir(), d), 0o755); err != nil {
			return fmt.Errorf("creating state of node %s: %w", n.Name, err)
		}
		if d != "log" {
			// The mount point on the host: an empty directory, only ever mounted on inside nodes.
			if err := os.MkdirAll("/"+d, 0o755); err != nil {
				return fmt.Errorf("creating mount point /%s: %w", d, err)
			}
		}
	}
	// The kubelet's static pod directory must exist before the kubelet starts, or it
	// notices new manifests only after a backoff of up to 20 s.
	if err := os.MkdirAll(n.HostPath("/etc/kubernetes/manifests"), 0o755); err != nil {
		return fmt.Errorf("creating static pod directory: %w", err)
	}
	files := map[string]string{
		"ip": n.IP + "\n",
		// The host's resolver is unreachable from a node and every lookup would hang for
		// 10 s; 127.0.0.1 fails at once, and the image registry name resolves from hosts.
		"hosts":       fmt.Sprintf("127.0.0.1 localhost registry.local\n%s %s\n", n.IP, n.Name),
		"resolv.conf": "nameserver 127.0.0.1\n",
	}
	if n.opts.Selfkube != "" {
		files[selfkubeFile] = n.opts.Selfkube + "\n"
	}
	if err := n.installKubelet(); err != nil {
		return err
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(n.Dir(), f), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s of node %s: %w", f, n.Name, err)
		}
	}
	if !n.opts.NoPodNetwork {
		if err := n.writeBridgeCNI(); err != nil {
			return err
		}
	}
	return n.installCNIPlugins()
}

// writeBridgeCNI gives the node a bridge CNI network over its pod subnet, unless a network
// configuration is there already.
func (n *Node) writeBridgeCNI() error {
	dir := n.HostPath("/etc/cni/net.d")
	if es, _ := os.ReadDir(dir); len(es) > 0 {
		return nil
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "podnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodSubnet())
	if err := os.WriteFile(filepath.Join(dir, "10-bridge.conflist"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("writing CNI config of node %s: %w", n.Name, err)
	}
	return nil
}

// installCNIPlugins copies the cached CNI plugins into the node's /opt/cni/bin, as a
// node's package manager would have.
func (n *Node) installCNIPlugins() error {
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		dst := n.HostPath("/opt/cni/bin/" + p)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := copyFile(filepath.Join(n.h.cfg.CNIBinDir(), p), dst, 0o755); err != nil {
			return fmt.Errorf("installing CNI plugin %s on node %s: %w", p, n.Name, err)
		}
	}
	return nil
}

// boot starts the node: network, cgroups, holder, containerd, images, kubelet.
func (n *Node) boot(ctx context.Context) error {
	start := time.Now()
	if err := ensureBridge(); err != nil {
		return err
	}
	if err := deleteNetwork(n.Name); err != nil {
		return err
	}
	if err := createNetwork(n.Name, n.IP); err != nil {
		return err
	}
	if err := n.h.cg.create(n.Name); err != nil {
		return err
	}
	if err := n.prepareRun(); err != nil {
		return err
	}
	if err := n.startHolder(ctx); err != nil {
		return err
	}
	if err := n.writeContainerdConfig(); err != nil {
		return err
	}
	if err := n.startService("containerd", "", n.h.containerdCommand(n)...); err != nil {
		return err
	}
	sock := n.HostPath("/run/containerd/containerd.sock")
	if err := waitFor(ctx, 30*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return fmt.Errorf("containerd of node %s did not start: see %s: %w", n.Name, n.logPath("containerd"), err)
	}
	if err := n.importImages(ctx); err != nil {
		return err
	}
	if err := n.startService("kubelet", "/var/lib/kubelet/config.yaml", n.kubeletCommand()...); err != nil {
		return err
	}
	if _, err := os.Stat(n.HostPath("/var/lib/kubelet/config.yaml")); err == nil {
		// A joined node: boot is done once its kubelet runs (KubeletStarted is then set).
		if err := waitFor(ctx, 10*time.Second, func() bool { _, err := n.KubeletStarted(); return err == nil }); err != nil {
			return fmt.Errorf("kubelet of node %s did not start: see %s: %w", n.Name, n.logPath("kubelet"), err)
		}
	}
	n.h.logf("node %s up: ip %s, pods %s (%s)", n.Name, n.IP, n.PodSubnet(), time.Since(start).Round(time.Millisecond))
	return nil
}

// prepareRun gives the boot an empty /run with the files a distribution would put there.
func (n *Node) prepareRun() error {
	run := n.HostPath("/run")
	if err := os.RemoveAll(run); err != nil {
		return fmt.Errorf("wiping /run of node %s: %w", n.Name, err)
	}
	// Like systemd-resolved's upstream file: the kubelet hands it to pods with dnsPolicy
	// Default (CoreDNS). 127.0.0.1 there would be CoreDNS itself (its loop plugin then
	// aborts); the bridge address refuses DNS at once.
	resolv := filepath.Join(run, "systemd/resolve/resolv.conf")
	if err := os.MkdirAll(filepath.Dir(resolv), 0o755); err != nil {
		return fmt.Errorf("creating /run of node %s: %w", n.Name, err)
	}
	if err := os.WriteFile(resolv, []byte("nameserver "+BridgeIP+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing upstream resolv.conf of node %s: %w", n.Name, err)
	}
	return nil
}

// selfkubeFile, in a node's directory, names the selfkube binary the node has installed.
const selfkubeFile = "selfkube-binary"

// kubeletCommand starts the kubelet the way the systemd drop-ins do: kubeadm's, and on
// a node with selfkube, deploy/systemd's, whose ExecStartPre (allowed to fail) activates
// the checkpoints a reboot needs.
func (n *Node) kubeletCommand() []string {
	pre := ""
	if b, err := os.ReadFile(filepath.Join(n.Dir(), selfkubeFile)); err == nil {
		pre = fmt.Sprintf("%q checkpointer boot || true\n", strings.TrimSpace(string(b)))
	}
	return []string{"bash", "-c", pre + `KUBELET_KUBEADM_ARGS=""
[ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
exec ` + KubeletPath + ` --config=/var/lib/kubelet/config.yaml \
  --kubeconfig=/etc/kubernetes/kubelet.conf \
  --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
  $KUBELET_KUBEADM_ARGS`}
}

func (n *Node) logPath(service string) string {
	return filepath.Join(n.Dir(), "log", service+".log")
}

// startHolder starts the process that owns the node's namespaces and waits for its pid.
func (n *Node) startHolder(ctx context.Context) error {
	pidFile := filepath.Join(n.Dir(), "holder.pid")
	_ = os.Remove(pidFile)
	cmd := exec.Command(n.h.agent, agentArg, "cgexec", n.Name, "--",
		"nsenter", "--net="+filepath.Join("/run/netns", netnsName(n.Name)),
		"unshare", "--mount", "--uts", "--cgroup", "--propagation", "private", "--",
		n.h.agent, agentArg, "holder", n.Name, n.Dir())
	if err := n.h.startDetached(cmd, n.logPath("holder")); err != nil {
		return fmt.Errorf("starting the holder of node %s: %w", n.Name, err)
	}
	if err := waitFor(ctx, 10*time.Second, func() bool { return n.Running() }); err != nil {
		return fmt.Errorf("holder of node %s did not come up: see %s: %w", n.Name, n.logPath("holder"), err)
	}
	return nil
}

// startDetached starts cmd in its own session with output appended to logFile, and reaps it
// in the background: it outlives this process when that exits (the nodes CLI).
func (h *Harness) startDetached(cmd *exec.Cmd, logFile string) error {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	defer f.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Env == nil {
		cmd.Env = h.env()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// env is the environment of every process the harness runs in a node.
func (h *Harness) env() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") && !strings.HasPrefix(e, "KUBECONFIG=") {
			env = append(env, e)
		}
	}
	return append(env, "PATH="+h.cfg.KubeBinDir()+":"+h.cfg.EtcdBinDir()+":"+systemPath)
}

// startService runs argv inside the node under a supervisor that restarts it.
func (n *Node) startService(service, waitFile string, argv ...string) error {
	cmd, err := n.Command(context.Background(), append([]string{n.h.agent, agentArg, "supervise", service, waitFile, "--"}, argv...)...)
	if err != nil {
		return err
	}
	if err := n.h.startDetached(cmd, n.logPath(service)); err != nil {
		return fmt.Errorf("starting %s on node %s: %w", service, n.Name, err)
	}
	return nil
}

// holderPID is the pid of the node's holder, or 0 when the node is not running.
func (n *Node) holderPID() int {
	b, err := os.ReadFile(filepath.Join(n.Dir(), "holder.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Running reports whether the node is powered on.
func (n *Node) Running() bool { return n.holderPID() != 0 }

// Command prepares argv to run inside the node: it first joins the node's cgroups, then
// enters the holder's network, mount, UTS and cgroup namespaces. Paths must be absolute
// (or found in PATH: the cached Kubernetes and etcd binaries, then the system's).
func (n *Node) Command(ctx context.Context, argv ...string) (*exec.Cmd, error) {
	pid := n.holderPID()
	if pid == 0 {
		return nil, fmt.Errorf("node %s is not running: power it on first", n.Name)
	}
	args := append([]string{agentArg, "cgexec", n.Name, "--",
		"nsenter", "-t", strconv.Itoa(pid), "--net", "--mount", "--uts", "--cgroup", "--"}, argv...)
	cmd := exec.CommandContext(ctx, n.h.agent, args...)
	cmd.Env = n.h.env()
	return cmd, nil
}

// Exec runs argv inside the node and returns its combined output; the error carries the
// output too.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	cmd, err := n.Command(ctx, argv...)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return buf.String(), fmt.Errorf("running %q on node %s: %w\n%s", strings.Join(argv, " "), n.Name, err, tail(buf.String(), 4000))
	}
	return buf.String(), nil
}

// PowerOff kills every process of the node at once and forgets everything a reboot
// forgets: mounts (they die with the mount namespace), network namespace with pod veths and
// iptables rules, cgroups, /run. The disk (state directories) stays.
func (n *Node) PowerOff() error {
	var errs []error
	if err := n.h.cg.kill(n.Name); err != nil {
		errs = append(errs, err)
	}
	if err := n.h.cg.remove(n.Name); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNetwork(n.Name); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(filepath.Join(n.Dir(), "holder.pid"))
	if err := os.RemoveAll(n.HostPath("/run")); err != nil { // /run is a tmpfs on a real machine
		errs = append(errs, fmt.Errorf("wiping /run: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("powering off node %s: %w", n.Name, err)
	}
	return nil
}

// PowerOn boots a powered-off node again.
func (n *Node) PowerOn(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("node %s is already running", n.Name)
	}
	return n.boot(ctx)
}

// Reboot is PowerOff then PowerOn.
func (n *Node) Reboot(ctx context.Context) error {
	if err := n.PowerOff(); err != nil {
		return err
	}
	return n.PowerOn(ctx)
}

// Partition cuts the node off the network (host side of its veth down); Heal restores it.
func (n *Node) Partition() error { return setLink(n.Name, false) }

// Heal restores the network of a partitioned node.
func (n *Node) Heal() error { return setLink(n.Name, true) }

// Down powers the node off and deletes it, state directory included.
func (n *Node) Down() error {
	err := n.PowerOff()
	if n.IP != "" && linkExists(BridgeName) {
		_ = run("ip", "route", "del", PodSubnet(n.IP))
	}
	if rmErr := os.RemoveAll(n.Dir()); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("deleting state of node %s: %w", n.Name, rmErr))
	}
	n.h.mu.Lock()
	delete(n.h.nodes, n.Name)
	n.h.mu.Unlock()
	return err
}

// KubeletStarted is when the node's supervisor last started the kubelet.
func (n *Node) KubeletStarted() (time.Time, error) { return n.serviceStarted("kubelet") }

func (n *Node) serviceStarted(service string) (time.Time, error) {
	b, err := os.ReadFile(n.HostPath(filepath.Join(runDir, service+".started")))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s has not started on node %s: %w", service, n.Name, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading start time of %s on node %s: %w", service, n.Name, err)
	}
	return time.Unix(0, ns), nil
}

// CollectLogs copies the node's service logs and pod logs below dst/NAME.
func (n *Node) CollectLogs(dst string) error {
	dst = filepath.Join(dst, n.Name)
	var errs []error
	for _, src := range []string{filepath.Join(n.Dir(), "log"), n.HostPath("/var/log/pods")} {
		err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			rel, _ := filepath.Rel(n.Dir(), p)
			if strings.HasPrefix(rel, "log"+string(filepath.Separator)) {
				rel = strings.TrimPrefix(rel, "log"+string(filepath.Separator))
			}
			return copyFile(p, filepath.Join(dst, rel), 0o644)
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range []string{"/var/lib/kubelet/config.yaml", "/var/lib/kubelet/kubeadm-flags.env", "containerd.toml"} {
		src := n.HostPath(f)
		if !strings.HasPrefix(f, "/") {
			src = filepath.Join(n.Dir(), f)
		}
		if _, err := os.Stat(src); err == nil {
			errs = append(errs, copyFile(src, filepath.Join(dst, "files", filepath.Base(f)), 0o644))
		}
	}
	return errors.Join(errs...)
}

// DownAll deletes every node of the harness's work directory, and the bridge once no node
// is left.
func (h *Harness) DownAll() error {
	nodes, err := h.Nodes()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if err := n.Down(); err != nil {
			errs = append(errs, err)
		}
	}
	if linkExists(BridgeName) {
		if err := run("ip", "link", "del", BridgeName); err != nil {
			errs = append(errs, fmt.Errorf("deleting bridge: %w", err))
		}
	}
	for _, hi := range h.cg.hs {
		_ = syscall.Rmdir(filepath.Join(hi.mount, cgroupParent))
	}
	return errors.Join(errs...)
}

// closeInheritedFiles marks every file descriptor above stderr close-on-exec. Go opens its
// own files that way, but descriptors inherited from the caller (a script's lock, say) would
// otherwise pass on to the node processes, which live on after this process.
func closeInheritedFiles() {
	es, _ := os.ReadDir("/proc/self/fd")
	for _, e := range es {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// waitFor polls cond every 50 ms until it holds, ctx ends, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", timeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
