// Package recovery is `selfkube recover`: it brings a lost control plane back on a
// control-plane node, from what is left on that node.
//
//	--from-snapshot FILE  etcd's data is gone or corrupt: etcd is stopped, its data dir
//	                      moved aside, the snapshot restored (etcd's own restore: one
//	                      member, a new cluster ID, revisions bumped and compacted so
//	                      every watcher lists again), etcd started again; then as below.
//	--force-new-cluster   etcd lost its quorum for good: the member's data is copied
//	                      aside and it restarts once with --force-new-cluster, as the
//	                      one member of a cluster that keeps all its data; then as below.
//	(neither)             etcd is fine, the control plane is not (its DaemonSet or
//	                      Deployments deleted, no apiserver running):
//
// then an apiserver is made to answer on this node (the checkpoints on disk stand in
// if none does), the self-hosted control plane's missing workloads are created again
// from the ControlPlane resource and the cluster configuration in etcd, and the command
// waits until the self-hosted pods run and no checkpoint stands in any more.
//
// Nothing is deleted without --force: a data directory is moved aside with a timestamp.
// Every phase converges, and the run is recorded in the node's ledger
// (host.Record "recover"), so a run that was interrupted is finished by running the same
// command again.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/status"
	"github.com/selfkube/selfkube/internal/workflow"
)

// Mode is what kind of recovery a run is.
type Mode string

const (
	FromSnapshot    Mode = "from-snapshot"
	ForceNewCluster Mode = "force-new-cluster"
	ControlPlane    Mode = "control-plane"
)

// Options are the knobs of one run.
type Options struct {
	Layout host.Layout
	// Snapshot is the snapshot to restore (FromSnapshot).
	Snapshot string
	// ForceNewCluster restarts the local member as a cluster of one.
	ForceNewCluster bool
	// Force deletes what would be moved aside.
	Force bool
	// DryRun says what would be done and changes nothing.
	DryRun bool
	// Kubeconfig is an administrator's kubeconfig (admin.conf).
	Kubeconfig string
	// EtcdTimeout bounds the waits for etcd to stop and to serve; APITimeout the wait
	// for an apiserver; SelfHostedTimeout the wait for the self-hosted control plane.
	EtcdTimeout, APITimeout, SelfHostedTimeout time.Duration
	Status                                     *status.Printer
	Log                                        *slog.Logger
	Now                                        func() time.Time
}

// Mode is the kind of recovery the options ask for.
func (o Options) Mode() Mode {
	switch {
	case o.Snapshot != "":
		return FromSnapshot
	case o.ForceNewCluster:
		return ForceNewCluster
	}
	return ControlPlane
}

// Data is what the phases share.
type Data struct {
	Options
	Record *host.Record
	// Pod is this node's etcd static pod as it was before the run; Member what it says.
	Pod    *corev1.Pod
	Member manifests.EtcdMember
	// SnapshotInfo is what the snapshot file holds (FromSnapshot).
	SnapshotInfo etcd.SnapshotInfo
	// NodeName is this node's name.
	NodeName string

	api *apiClient
}

// recordName is the name of the run's record in the node's ledger.
const recordName = "recover"

// The files of a run, in the state directory.
func (d *Data) stateDir() string      { return filepath.Join(d.Layout.StateDir(), "recover") }
func (d *Data) savedManifest() string { return filepath.Join(d.stateDir(), manifests.EtcdStaticPod) }
func (d *Data) etcdManifest() string {
	return filepath.Join(d.Layout.ManifestsDir(), manifests.EtcdStaticPod)
}
func (d *Data) dataDir() string { return d.Layout.HostPath(d.Member.DataDir) }

func needsEtcdStop(d *Data) bool { return d.Mode() != ControlPlane }
func restoring(d *Data) bool     { return d.Mode() == FromSnapshot }
func forcing(d *Data) bool       { return d.Mode() == ForceNewCluster }

// otherMembersLost: after a restore or a forced new cluster this node's etcd member is
// the only one, and the other control-plane nodes are lost until they join again.
func otherMembersLost(d *Data) bool { return d.Mode() != ControlPlane }

// Workflow lists recover's phases in order.
func Workflow() *workflow.Workflow[*Data] {
	return &workflow.Workflow[*Data]{Phases: []workflow.Phase[*Data]{
		{Name: "stop-etcd", Short: "stopping etcd (its static pod set aside)", Run: stopEtcd, RunIf: needsEtcdStop},
		{Name: "restore", Short: "restoring the snapshot into etcd's data directory", Run: restore, RunIf: restoring},
		{Name: "force-new-cluster", Short: "restarting etcd as a cluster of one member with its data", Run: forceNewCluster, RunIf: forcing},
		{Name: "start-etcd", Short: "starting etcd", Run: startEtcd},
		{Name: "api", Short: "an apiserver serving on this node", Run: waitAPI},
		{Name: "reapply", Short: "creating the self-hosted control plane's missing workloads", Run: reapply},
		{Name: "stand-ins", Short: "standing in for the control plane of the lost control-plane nodes", Run: standIns, RunIf: otherMembersLost},
		{Name: "self-hosted", Short: "waiting for the self-hosted control plane", Run: waitSelfHosted},
	}}
}

// ErrInterrupted says an earlier run with other arguments did not finish.
var ErrInterrupted = errors.New("an earlier `selfkube recover` on this node did not finish")

// Prepare checks the node and the input and returns the run's data, changing nothing:
// the etcd member of this node (from its static pod, or the copy an interrupted run set
// aside), the snapshot's integrity and content, and the ledger of an earlier run.
func Prepare(o Options) (*Data, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	rec, err := host.LoadRecord(o.Layout, recordName)
	if err != nil {
		return nil, err
	}
	d := &Data{Options: o, Record: rec}
	if rec.Exists() && !rec.IsCompleted() && rec.Recovery != nil {
		if r := rec.Recovery; r.Mode != string(o.Mode()) || r.Snapshot != absOr(o.Snapshot) {
			return nil, fmt.Errorf("%w (%s%s, started %s, phases done: %s): run it again with the same arguments to finish it, or remove %s to start over",
				ErrInterrupted, r.Mode, orEmpty(" "+r.Snapshot, r.Snapshot != ""), r.Started.Format(time.RFC3339),
				orEmpty(strings.Join(rec.Done, ", "), len(rec.Done) > 0, "none"), filepath.Join(o.Layout.StateDir(), recordName+".json"))
		}
	} else {
		// A finished run, or none: this is a new one.
		rec.Done, rec.Completed, rec.Owned = nil, time.Time{}, nil
		rec.Recovery = &host.Recovery{Mode: string(o.Mode()), Snapshot: absOr(o.Snapshot), Started: o.Now()}
	}
	if d.Pod, err = d.readEtcdPod(); err != nil {
		return nil, err
	}
	if d.Member, err = manifests.EtcdMemberOf(d.Pod); err != nil {
		return nil, err
	}
	d.NodeName = d.Member.Name // selfkube names a member after its node
	if o.Snapshot != "" {
		if d.SnapshotInfo, err = etcd.SnapshotStatus(o.Snapshot); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Plan says what a run would do, one line per step (for --dry-run).
func (d *Data) Plan() []string {
	var out []string
	add := func(f string, args ...any) { out = append(out, fmt.Sprintf(f, args...)) }
	where, _, _ := d.placement()
	aside := "move it aside to " + where
	if d.Force {
		aside = "delete it (--force)"
	}
	switch d.Mode() {
	case FromSnapshot:
		add("stop etcd: move %s to %s and wait until %s refuses connections", d.etcdManifest(), d.savedManifest(), d.Member.ClientURL)
		add("restore %s (revision %d, %d keys, %d bytes) as the one member %s (%s) of a new cluster, revisions bumped by %d and compacted",
			d.Snapshot, d.SnapshotInfo.Revision, d.SnapshotInfo.Keys, d.SnapshotInfo.Size, d.Member.Name, d.Member.PeerURL, etcd.RevisionBump)
		add("etcd's data directory %s: %s, then put the restored one in its place", d.dataDir(), aside)
	case ForceNewCluster:
		add("stop etcd: move %s to %s and wait until %s refuses connections", d.etcdManifest(), d.savedManifest(), d.Member.ClientURL)
		add("copy etcd's data directory %s to %s", d.dataDir(), where)
		add("start etcd once with --force-new-cluster: member %s becomes the only member, with all its data", d.Member.Name)
	}
	if d.Mode() != ControlPlane {
		add("put etcd's static pod back as it was, and wait until the member answers with a leader")
	} else {
		add("check that etcd's member %s at %s answers with a leader", d.Member.Name, d.Member.ClientURL)
	}
	add("wait for an apiserver on this node (%s); if none answers, activate the checkpoints in %s", d.Kubeconfig, d.Layout.CheckpointsDir())
	add("create again each control-plane Secret that is missing, from this node's checkpoint of its component (%s/<component>/volumes/%s)",
		d.Layout.CheckpointsDir(), manifests.SecretVolume)
	add("create again, from the ControlPlane resource and the cluster configuration, each control-plane DaemonSet or Deployment that is missing")
	if otherMembersLost(d) {
		add("cordon the other control-plane nodes (no longer etcd members), delete their pods of the control-plane Deployments, and " +
			"for the controller manager and the scheduler, if no replica runs here or Ready on a live node, activate here a stand-in built from the Deployment and its Secret")
	}
	add("wait until the self-hosted apiserver, controller manager and scheduler are Ready and no checkpoint is active on this node")
	return out
}

// convergingPhases run again in a run that resumes an interrupted one: each looks at the
// cluster as it is now, and does only what is left.
var convergingPhases = []string{"start-etcd", "api", "reapply", "stand-ins", "self-hosted"}

// Run runs the phases, skipping those an interrupted run with the same arguments finished.
func Run(ctx context.Context, d *Data) error {
	skip := []string{}
	for _, p := range Workflow().Names() {
		if d.Record.Has(p) && !slices.Contains(convergingPhases, p) {
			skip = append(skip, p)
			d.Status.Infof("%s: done by the earlier run", p)
		}
	}
	err := Workflow().Run(ctx, d, workflow.Options{Skip: skip, Status: d.Status, Finished: func(p string) error {
		if err := d.Record.Finished(p); err != nil {
			return err
		}
		return d.Record.Save()
	}})
	if err != nil {
		return err
	}
	d.Record.Completed = d.Now()
	return d.Record.Save()
}

// readEtcdPod reads this node's etcd static pod: the copy an interrupted run set aside
// (the kubelet's directory may then hold none, or the one forcing a new cluster), else
// the one in the kubelet's directory.
func (d *Data) readEtcdPod() (*corev1.Pod, error) {
	data, err := os.ReadFile(d.savedManifest())
	if errors.Is(err, fs.ErrNotExist) {
		data, err = os.ReadFile(d.etcdManifest())
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("this node has no etcd static pod (%s): recover runs on a control-plane node with a local etcd member (an external etcd is restored with its own tools)", d.etcdManifest())
		}
	}
	if err != nil {
		return nil, err
	}
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("reading etcd's static pod: %w", err)
	}
	return &p, nil
}

// stopEtcd sets etcd's static pod aside (the kubelet stops the member) and waits until
// the member's client port refuses connections.
func stopEtcd(ctx context.Context, d *Data) error {
	if d.Mode() == FromSnapshot && !d.Force {
		if n, err := d.quorate(ctx); err == nil && n > 1 {
			return fmt.Errorf("etcd's member %s answers with a leader among %d members: the cluster still has its data and its quorum, "+
				"and a restore here would split it in two. Restore on every control-plane node's behalf only once the cluster is lost, "+
				"or pass --force to restore anyway (the other members must then reset and join again)", d.Member.Name, n)
		}
	}
	if err := d.pauseAPIServerStandIn(); err != nil {
		return err
	}
	if data, err := os.ReadFile(d.etcdManifest()); err == nil {
		if err := d.Record.Own(d.savedManifest()); err != nil {
			return err
		}
		if _, err := host.WriteFile(d.savedManifest(), data, 0o600); err != nil {
			return err
		}
		if err := os.Remove(d.etcdManifest()); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return d.waitStopped(ctx)
}

// pauseAPIServerStandIn retires the apiserver's checkpoint while etcd restarts, when it
// is active (after a reboot that lost etcd's data, it serves an empty cluster): an
// apiserver without its etcd hangs every request until it times out, the kubelet's too,
// and the kubelet starts the new etcd only after its request for etcd's mirror pod gave
// up. Nothing listening, the kubelet's requests fail at once. start-etcd activates it
// again once etcd serves.
func (d *Data) pauseAPIServerStandIn() error {
	store := checkpoint.Store{Dir: d.Layout.CheckpointsDir(), ManifestsDir: d.Layout.ManifestsDir()}
	if !store.Active(checkpoint.CheckpointAPIServer) {
		return nil
	}
	unlock, err := store.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if !slices.Contains(d.Record.Recovery.Paused, checkpoint.CheckpointAPIServer) {
		d.Record.Recovery.Paused = append(d.Record.Recovery.Paused, checkpoint.CheckpointAPIServer)
		if err := d.Record.Save(); err != nil {
			return err
		}
	}
	d.Status.Infof("retired the apiserver's checkpoint while etcd restarts")
	return store.Retire(checkpoint.CheckpointAPIServer)
}

// resumeStandIns activates again the checkpoints pauseAPIServerStandIn retired.
func (d *Data) resumeStandIns() error {
	if len(d.Record.Recovery.Paused) == 0 {
		return nil
	}
	store := checkpoint.Store{Dir: d.Layout.CheckpointsDir(), ManifestsDir: d.Layout.ManifestsDir()}
	unlock, err := store.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, name := range d.Record.Recovery.Paused {
		if store.Present(name) && !store.Active(name) {
			if err := store.Activate(name); err != nil {
				return err
			}
		}
	}
	d.Record.Recovery.Paused = nil
	return d.Record.Save()
}

// waitStopped waits until the member's client port refuses connections and no process
// holds the lock on its write-ahead log any more: etcd closes its listeners before its
// database and log, which are not to be copied or moved while it writes them.
func (d *Data) waitStopped(ctx context.Context) error {
	if err := waitPort(ctx, d.Member.ClientURL, false, d.EtcdTimeout); err != nil {
		return err
	}
	deadline := time.Now().Add(d.EtcdTimeout)
	for {
		locked, err := etcd.WALLocked(d.dataDir())
		if err != nil {
			return err
		}
		if !locked {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd's write-ahead log in %s is still locked %s after its static pod was set aside: is an etcd process left running?", d.dataDir(), d.EtcdTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// quorate asks the local member, briefly, whether it has a leader, and how many members
// it lists.
func (d *Data) quorate(ctx context.Context) (int, error) {
	c, err := etcd.Dial([]string{d.Member.ClientURL}, filepath.Join(d.Layout.PKIDir(), "etcd"))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Healthy(ctx, d.Member.ClientURL); err != nil {
		return 0, err
	}
	ms, err := c.Members(ctx)
	return len(ms), err
}

// waitPort waits until the host:port of u accepts connections (open) or refuses them.
func waitPort(ctx context.Context, u string, open bool, timeout time.Duration) error {
	parsed, err := url.Parse(u)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", parsed.Host, time.Second)
		if c != nil {
			c.Close()
		}
		if (err == nil) == open {
			return nil
		}
		if time.Now().After(deadline) {
			if open {
				return fmt.Errorf("etcd does not listen on %s after %s: `crictl ps -a --name etcd` and its logs say why", parsed.Host, timeout)
			}
			return fmt.Errorf("etcd still listens on %s after %s although its static pod is gone: is the kubelet running?", parsed.Host, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// stamp is the time a run puts into the names of what it moves aside.
func (d *Data) stamp() string { return d.Record.Recovery.Started.UTC().Format("20060102T150405Z") }

// restore restores the snapshot into a new directory beside the data directory, moves
// the data directory aside (or deletes it with --force) and puts the restored one in its
// place. A directory left by an interrupted restore is incomplete and is replaced.
func restore(_ context.Context, d *Data) error {
	dir := d.dataDir()
	aside, staging, inside := d.placement()
	if slices.Contains(d.Record.Recovery.MovedAside, aside) {
		// An interrupted run set the old data aside: what is in dir now is the snapshot it
		// restored, or nothing yet.
		if _, err := os.Stat(filepath.Join(dir, "member")); err == nil {
			d.Status.Infof("%s holds the snapshot restored by the earlier run", dir)
			return host.EnsurePrivateDir(dir)
		}
	}
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	token := "selfkube-recovered-" + d.stamp()
	if err := etcd.Restore(etcd.RestoreOptions{Snapshot: d.Snapshot, DataDir: staging, Name: d.Member.Name,
		PeerURL: d.Member.PeerURL, ClusterToken: token}); err != nil {
		return err
	}
	if err := d.setAside(dir); err != nil {
		return err
	}
	if inside {
		if err := moveEntries(staging, dir, nil); err != nil {
			return fmt.Errorf("putting the restored data into %s: %w", dir, err)
		}
		if err := os.Remove(staging); err != nil {
			return err
		}
	} else if err := os.Rename(staging, dir); err != nil {
		return err
	}
	if err := host.EnsurePrivateDir(dir); err != nil {
		return err
	}
	d.Status.Infof("restored revision %d (%d keys) as member %s of a new cluster (token %s)", d.SnapshotInfo.Revision, d.SnapshotInfo.Keys, d.Member.Name, token)
	return nil
}

// placement says where a run sets etcd's data aside and restores a snapshot: beside
// the data directory (<dir>.before-recover-<time>, <dir>.restoring), or inside it when
// the directory cannot be renamed (a mount point, say a disk of its own, or a symbolic
// link to one): <dir>/.before-recover-<time> and <dir>/.restoring, on the same disk.
func (d *Data) placement() (aside, staging string, inside bool) {
	dir := d.dataDir()
	if inPlace(dir) {
		return filepath.Join(dir, asidePrefix+d.stamp()), filepath.Join(dir, stagingName), true
	}
	return dir + asidePrefix + d.stamp(), dir + stagingName, false
}

const (
	asidePrefix = ".before-recover-"
	stagingName = ".restoring"
)

// inPlace says dir must keep its place: a symbolic link, or a mount point (another
// device than its parent's).
func inPlace(dir string) bool {
	lst, err := os.Lstat(dir)
	if err != nil {
		return false
	}
	if lst.Mode()&fs.ModeSymlink != 0 {
		return true
	}
	st, err1 := os.Stat(dir)
	parent, err2 := os.Stat(filepath.Dir(dir))
	if err1 != nil || err2 != nil {
		return false
	}
	a, ok1 := st.Sys().(*syscall.Stat_t)
	b, ok2 := parent.Sys().(*syscall.Stat_t)
	if ok1 && ok2 && a.Dev != b.Dev {
		return true
	}
	// A bind mount of a directory of the same file system has its parent's device.
	return mountPoint(dir)
}

// mountPoint says dir is a mount point of this process's mount namespace
// (/proc/self/mountinfo, field 5).
func mountPoint(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	clean := filepath.Clean(dir)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMount(f[4]) == clean {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// moveEntries renames every entry of src into dst, but those skip names.
func moveEntries(src, dst string, skip func(name string) bool) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if skip != nil && skip(e.Name()) {
			continue
		}
		if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// ours says an entry of the data directory is one a run made (what it set aside, or a
// restore under way), not etcd's.
func ours(name string) bool { return strings.HasPrefix(name, asidePrefix) || name == stagingName }

// setAside moves etcd's data in dir aside (see placement), or deletes it with --force.
// A missing or empty dir needs neither.
func (d *Data) setAside(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	entries = slices.DeleteFunc(entries, func(e fs.DirEntry) bool { return ours(e.Name()) })
	aside, _, inside := d.placement()
	switch {
	case len(entries) == 0:
		return nil
	case d.Force:
		d.Status.Infof("deleting etcd's data in %s (--force)", dir)
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		return nil
	case inside:
		if err := os.Mkdir(aside, host.PrivateDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := moveEntries(dir, aside, ours); err != nil {
			return fmt.Errorf("moving etcd's data aside: %w", err)
		}
	default:
		if err := os.Rename(dir, aside); err != nil {
			return fmt.Errorf("moving etcd's data directory aside: %w", err)
		}
	}
	d.Record.Recovery.MovedAside = append(d.Record.Recovery.MovedAside, aside)
	d.Status.Infof("moved etcd's data in %s aside to %s (remove it once the cluster is back)", dir, aside)
	return d.Record.Save()
}

// forceNewCluster copies the data directory aside and starts the member once with
// --force-new-cluster, until it serves as the only member; start-etcd then puts the
// static pod back as it was.
func forceNewCluster(ctx context.Context, d *Data) error {
	dir := d.dataDir()
	aside, _, _ := d.placement()
	if !slices.Contains(d.Record.Recovery.MovedAside, aside) {
		if err := os.RemoveAll(aside); err != nil { // a copy an interrupted run began
			return err
		}
		if err := copyTree(dir, aside, ours); err != nil {
			return fmt.Errorf("copying etcd's data aside: %w", err)
		}
		d.Record.Recovery.MovedAside = append(d.Record.Recovery.MovedAside, aside)
		if err := d.Record.Save(); err != nil {
			return err
		}
		d.Status.Infof("copied %s to %s", dir, aside)
	}
	pod, err := manifests.EtcdForcingNewCluster(d.Pod)
	if err != nil {
		return err
	}
	data, err := manifests.Encode(pod)
	if err != nil {
		return err
	}
	if _, err := host.WriteFile(d.etcdManifest(), data, 0o600); err != nil {
		return err
	}
	if err := waitPort(ctx, d.Member.ClientURL, true, d.EtcdTimeout); err != nil {
		return err
	}
	if err := d.waitEtcd(ctx, 1); err != nil {
		return err
	}
	// Stopped again, so that start-etcd's wait sees the member as its own static pod
	// runs it, never this one-time start.
	if err := os.Remove(d.etcdManifest()); err != nil {
		return err
	}
	return d.waitStopped(ctx)
}

// absOr is path made absolute ("" stays "").
func absOr(path string) string {
	if path == "" {
		return ""
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// orEmpty is s when ok, else the first of otherwise (or "").
func orEmpty(s string, ok bool, otherwise ...string) string {
	if ok {
		return s
	}
	if len(otherwise) > 0 {
		return otherwise[0]
	}
	return ""
}
