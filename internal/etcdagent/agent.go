package etcdagent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
)

// Defaults of the agent's settings.
const (
	// DefaultSnapshotDir is where snapshots are kept on each control-plane node.
	DefaultSnapshotDir = manifests.EtcdSnapshotDir
	// DefaultKeep is how many snapshots are kept.
	DefaultKeep = 5
	// resync is how often the agent looks again without a change of the ControlPlane
	// (the static pod on disk has no watch).
	resync = 10 * time.Second
	// handOffTimeout bounds handing etcd's leadership on (etcd waits up to an election
	// timeout for the transferee to catch up).
	handOffTimeout = 10 * time.Second
)

// Agent carries out the operator's word about this node's etcd member. It is a
// component.Component: Init checks its directories, Start starts an informer on the
// ControlPlane and one worker, Stop ends them (a change under way is finished first).
type Agent struct {
	Client       dynamic.Interface
	Node         string
	ManifestsDir string
	// SnapshotDir (made 0700) keeps the newest Keep snapshots (0600) and the static pod
	// each change replaced.
	SnapshotDir string
	Keep        int
	// Interval schedules a snapshot (0: none) besides those before changes; the newest
	// KeepScheduled of them are kept.
	Interval      time.Duration
	KeepScheduled int
	// PKIDir holds etcd's CA and the healthcheck client certificate.
	PKIDir string
	Events component.EventSink
	Log    *slog.Logger
	Now    func() time.Time
	// Snapshot takes a snapshot of the member at endpoint to path (etcd's client by
	// default).
	Snapshot func(ctx context.Context, endpoint, path string) (revision, size int64, err error)
	// CheckMember checks the member at endpoint (it answers with a leader) and returns
	// how many started, voting members its list has, or why the check fails (etcd's
	// client by default).
	CheckMember func(ctx context.Context, endpoint string) (members int32, err error)
	// HandOff moves etcd's leadership away from the member at endpoint if it leads, and
	// says to which member ("" when it did not lead); etcd's client by default.
	HandOff func(ctx context.Context, endpoint string) (to string, err error)

	life     component.Lifecycle
	informer cache.SharedIndexInformer
	factory  dynamicinformer.DynamicSharedInformerFactory
	queue    workqueue.TypedRateLimitingInterface[string]
	cancel   context.CancelFunc
	done     sync.WaitGroup
	// syncing serializes Sync: the work queue calls it, and so may a caller (a test, a
	// one-shot run); two at once would both find a snapshot due.
	syncing sync.Mutex
	tried   attempt
	// lastScheduled is the newest scheduled snapshot on disk, failedScheduled the last
	// scheduled try that failed.
	lastScheduled, failedScheduled time.Time
}

// attempt is the last snapshot this agent took or tried.
type attempt struct {
	generation int64
	at         time.Time
	ok         bool
}

// Init implements component.Component.
func (a *Agent) Init(context.Context) error {
	a.life.Name = "etcd-agent"
	return a.life.Init(func() error {
		if a.Node == "" || a.ManifestsDir == "" || a.SnapshotDir == "" || a.Client == nil {
			return errors.New("the etcd agent needs a node name, the static-pod and snapshot directories and an API client")
		}
		if a.Keep <= 0 {
			a.Keep = DefaultKeep
		}
		if a.KeepScheduled <= 0 {
			a.KeepScheduled = DefaultKeep
		}
		if a.Now == nil {
			a.Now = time.Now
		}
		if a.Snapshot == nil {
			a.Snapshot = a.snapshotWithClient
		}
		if a.CheckMember == nil {
			a.CheckMember = a.checkWithClient
		}
		if a.HandOff == nil {
			a.HandOff = a.handOffWithClient
		}
		if err := host.EnsurePrivateDir(a.SnapshotDir); err != nil {
			return err
		}
		a.lastScheduled = newestScheduled(a.SnapshotDir, a.Node)
		return nil
	})
}

// Start implements component.Component.
func (a *Agent) Start(ctx context.Context) error {
	return a.life.Start(func() error {
		a.factory = dynamicinformer.NewFilteredDynamicSharedInformerFactory(a.Client, 10*time.Minute, "",
			func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", controlplane.Name).String()
			})
		a.informer = a.factory.ForResource(controlplane.GroupVersionResource).Informer()
		a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "etcd-agent"})
		enqueue := func(any) { a.queue.Add(controlplane.Name) }
		if _, err := a.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue}); err != nil {
			return err
		}
		ctx, a.cancel = context.WithCancel(ctx)
		a.factory.Start(ctx.Done())
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			defer utilruntime.HandleCrash()
			if !cache.WaitForCacheSync(ctx.Done(), a.informer.HasSynced) {
				return
			}
			a.queue.Add(controlplane.Name)
			go func() { <-ctx.Done(); a.queue.ShutDown() }()
			a.work(ctx)
		}()
		return nil
	})
}

// Stop implements component.Component.
func (a *Agent) Stop() error {
	return a.life.Stop(func(component.State) error {
		if a.cancel != nil {
			a.cancel()
			a.done.Wait()
			a.factory.Shutdown()
		}
		return nil
	})
}

func (a *Agent) work(ctx context.Context) {
	for {
		key, quit := a.queue.Get()
		if quit {
			return
		}
		if err := a.Sync(ctx); err != nil {
			a.Log.Warn("etcd agent: retrying", "err", err)
			a.queue.AddRateLimited(key)
		} else {
			a.queue.Forget(key)
			a.queue.AddAfter(key, resync)
		}
		a.queue.Done(key)
	}
}

// Sync looks once and does what Decide says.
func (a *Agent) Sync(ctx context.Context) error {
	a.syncing.Lock()
	defer a.syncing.Unlock()
	obj, ok, err := a.informer.GetStore().GetByKey(controlplane.Name)
	if err != nil || !ok {
		return err
	}
	u, isU := obj.(*unstructured.Unstructured)
	if !isU {
		return fmt.Errorf("the ControlPlane is a %T", obj)
	}
	cp, err := controlplane.FromUnstructured(u)
	if err != nil {
		return err
	}
	local, err := a.staticPod()
	if err != nil {
		return err
	}
	act := Decide(a.Node, cp.Status.Etcd, local, a.Now())
	if t := a.tried; act.Snapshot > 0 && t.generation == act.Snapshot && (t.ok || a.Now().Sub(t.at) < RetryAfter) {
		act.Snapshot = 0 // taken (or tried) already; the informer has not shown the report yet
	}
	if act.Snapshot > 0 {
		sn := a.takeSnapshot(ctx, local, act.Snapshot)
		a.tried = attempt{generation: act.Snapshot, at: a.Now(), ok: sn.Error == ""}
		if err := a.report(ctx, sn); err != nil {
			return err
		}
		// The snapshot took a while: what to change is decided on the next look, from the
		// ControlPlane as it is then.
		if a.queue != nil {
			a.queue.Add(controlplane.Name)
		}
		return nil
	}
	if local != nil && act.Change == nil && act.Check == nil && ScheduledDue(a.Interval, a.lastScheduled, a.failedScheduled, a.Now()) {
		sn := a.takeScheduled(ctx, local)
		if sn.Error != "" {
			a.failedScheduled = a.Now() // when the try ended: a slow failure waits RetryAfter too
		} else {
			a.lastScheduled = sn.Time.Time
		}
		return a.patchStatus(ctx, map[string]any{"scheduled": map[string]any{a.Node: snapshotEntry(sn)}}, "the scheduled etcd snapshot")
	}
	if act.Change != nil {
		a.change(ctx, local, act.Change)
	}
	if act.Check != nil {
		if err := a.reportCheck(ctx, a.check(ctx, local, act.Check)); err != nil {
			return err
		}
		// Looked at again soon: the operator takes a check made after the member came back
		// Ready, and the member restarts at the kubelet's pace.
		if a.queue != nil {
			a.queue.AddAfter(controlplane.Name, CheckEvery)
		}
	}
	return nil
}

// check checks this node's member for the change m: its endpoint answers with a leader,
// and the member list has every member started and voting.
func (a *Agent) check(ctx context.Context, local *corev1.Pod, m *controlplane.EtcdMemberChange) controlplane.EtcdCheck {
	// Stamped before it asks: the operator takes only a check begun after the member's
	// new process was Ready.
	out := controlplane.EtcdCheck{Generation: m.Generation, Target: m.Target, Time: metav1.NewTime(a.Now())}
	members, err := func() (int32, error) {
		endpoint, err := clientEndpoint(local)
		if err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(ctx, CheckEvery)
		defer cancel()
		return a.CheckMember(ctx, endpoint)
	}()
	out.Members = members
	if err != nil {
		out.Message = err.Error()
	} else {
		out.Healthy = true
	}
	return out
}

// checkWithClient is CheckMember with etcd's client.
func (a *Agent) checkWithClient(ctx context.Context, endpoint string) (int32, error) {
	c, err := etcd.Dial([]string{endpoint}, a.PKIDir)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Healthy(ctx, endpoint); err != nil {
		return 0, err
	}
	members, err := c.Members(ctx)
	if err != nil {
		return 0, err
	}
	return etcd.Voting(members)
}

// reportCheck writes c into the ControlPlane's status under this node's name (a merge
// patch, every field named).
func (a *Agent) reportCheck(ctx context.Context, c controlplane.EtcdCheck) error {
	entry := map[string]any{"generation": c.Generation, "target": c.Target, "healthy": c.Healthy, "members": c.Members,
		"message": nil, "time": c.Time}
	if c.Message != "" {
		entry["message"] = c.Message
	}
	return a.patchStatus(ctx, map[string]any{"checks": map[string]any{a.Node: entry}}, "the etcd member check")
}

// staticPod reads this node's etcd static pod; nil if there is none.
func (a *Agent) staticPod() (*corev1.Pod, error) {
	data, err := os.ReadFile(filepath.Join(a.ManifestsDir, manifests.EtcdStaticPod))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p corev1.Pod
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("reading %s: %w", manifests.EtcdStaticPod, err)
	}
	return &p, nil
}

// takeSnapshot snapshots the local member for generation and keeps the newest Keep.
func (a *Agent) takeSnapshot(ctx context.Context, local *corev1.Pod, generation int64) controlplane.EtcdSnapshot {
	now := a.Now()
	out := controlplane.EtcdSnapshot{Generation: generation, Time: metav1.NewTime(now)}
	fail := func(err error) controlplane.EtcdSnapshot {
		out.Error = err.Error()
		a.Events.Event(corev1.EventTypeWarning, "EtcdSnapshotFailed",
			fmt.Sprintf("snapshot of etcd before generation %d: %v (trying again in %s)", generation, err, RetryAfter))
		a.Log.Warn("etcd snapshot failed", "generation", generation, "err", err)
		return out
	}
	endpoint, err := clientEndpoint(local)
	if err != nil {
		return fail(err)
	}
	if err := host.EnsurePrivateDir(a.SnapshotDir); err != nil {
		return fail(err)
	}
	path := filepath.Join(a.SnapshotDir, fmt.Sprintf("%s%s-generation-%d-%s%s", snapshotPrefix, a.Node, generation,
		now.UTC().Format("20060102T150405Z"), snapshotSuffix))
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	rev, size, err := a.Snapshot(sctx, endpoint, path)
	if err != nil {
		return fail(err)
	}
	out.Path, out.Revision, out.Size = path, rev, size
	if err := prune(a.SnapshotDir, a.Keep, a.KeepScheduled); err != nil {
		a.Log.Warn("removing old etcd snapshots", "err", err)
	}
	a.Events.Event(corev1.EventTypeNormal, "EtcdSnapshotTaken",
		fmt.Sprintf("snapshot of etcd before generation %d: %s (revision %d, %d bytes)", generation, path, rev, size))
	a.Log.Info("etcd snapshot taken", "path", path, "revision", rev, "size", size)
	return out
}

// takeScheduled takes a scheduled snapshot of the local member and keeps the newest
// KeepScheduled of them.
func (a *Agent) takeScheduled(ctx context.Context, local *corev1.Pod) controlplane.EtcdSnapshot {
	now := a.Now()
	out := controlplane.EtcdSnapshot{Time: metav1.NewTime(now)}
	path := filepath.Join(a.SnapshotDir, fmt.Sprintf("%s%s%s%s%s", snapshotPrefix, a.Node, scheduledInfix,
		now.UTC().Format("20060102T150405Z"), snapshotSuffix))
	err := func() error {
		endpoint, err := clientEndpoint(local)
		if err != nil {
			return err
		}
		if err := host.EnsurePrivateDir(a.SnapshotDir); err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out.Revision, out.Size, err = a.Snapshot(sctx, endpoint, path)
		return err
	}()
	if err != nil {
		out.Error = err.Error()
		a.Events.Event(corev1.EventTypeWarning, "EtcdSnapshotFailed", fmt.Sprintf("scheduled snapshot of etcd: %v (trying again in %s)", err, RetryAfter))
		a.Log.Warn("scheduled etcd snapshot failed", "err", err)
		return out
	}
	out.Path = path
	if err := prune(a.SnapshotDir, a.Keep, a.KeepScheduled); err != nil {
		a.Log.Warn("removing old etcd snapshots", "err", err)
	}
	a.Events.Event(corev1.EventTypeNormal, "EtcdSnapshotTaken",
		fmt.Sprintf("scheduled snapshot of etcd: %s (revision %d, %d bytes)", path, out.Revision, out.Size))
	a.Log.Info("scheduled etcd snapshot taken", "path", path, "revision", out.Revision, "size", out.Size)
	return out
}

// newestScheduled is the time of the newest scheduled snapshot of node in dir (zero:
// none).
func newestScheduled(dir, node string) time.Time {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return time.Time{}
	}
	var newest time.Time
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), snapshotPrefix+node+scheduledInfix) || !strings.HasSuffix(e.Name(), snapshotSuffix) {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().After(newest) {
			newest = info.ModTime()
		}
	}
	return newest
}

// report writes the snapshot into the ControlPlane's status, under this node's name
// (a merge patch: the other nodes' entries and the operator's fields stay).
func (a *Agent) report(ctx context.Context, s controlplane.EtcdSnapshot) error {
	// Every field is written, an empty one as null: a merge patch leaves out what it
	// does not name, so an error of an earlier try would outlive a success.
	return a.patchStatus(ctx, map[string]any{"snapshots": map[string]any{a.Node: snapshotEntry(s)}}, "the etcd snapshot")
}

// snapshotEntry is s as a merge patch: every field named, an empty one as null.
func snapshotEntry(s controlplane.EtcdSnapshot) map[string]any {
	entry := map[string]any{"generation": s.Generation, "time": s.Time, "path": nil, "revision": nil, "size": nil, "error": nil}
	if s.Path != "" {
		entry["path"], entry["revision"], entry["size"] = s.Path, s.Revision, s.Size
	}
	if s.Error != "" {
		entry["error"] = s.Error
	}
	return entry
}

// patchStatus merges etcd into the ControlPlane's status.etcd.
func (a *Agent) patchStatus(ctx context.Context, etcd map[string]any, what string) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"etcd": etcd}})
	if err != nil {
		return err
	}
	_, err = a.Client.Resource(controlplane.GroupVersionResource).Patch(ctx, controlplane.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "selfkube-etcd-agent"}, "status")
	if err != nil {
		return fmt.Errorf("reporting %s in the ControlPlane's status: %w", what, err)
	}
	return nil
}

// change renders the member's static pod with the change's flags and replaces the file
// (the one replaced is kept beside the snapshots). A member that leads hands its
// leadership on first, so that its restart costs no election. A change it refuses is said
// in an Event; the operator's timeout then rolls it back.
func (a *Agent) change(ctx context.Context, local *corev1.Pod, m *controlplane.EtcdMemberChange) {
	err := func() error {
		pod, err := manifests.EtcdWith(local, m.ExtraArgs, m.Image)
		if err != nil {
			return err
		}
		data, err := manifests.Encode(pod)
		if err != nil {
			return err
		}
		a.handOff(ctx, local, m.Generation)
		file := filepath.Join(a.ManifestsDir, manifests.EtcdStaticPod)
		if old, err := os.ReadFile(file); err == nil {
			keep := filepath.Join(a.SnapshotDir, replacedPrefix+a.Now().UTC().Format("20060102T150405Z"))
			if _, err := host.WriteFile(keep, old, 0o600); err != nil {
				return err
			}
			if err := prune(a.SnapshotDir, a.Keep, a.KeepScheduled); err != nil {
				a.Log.Warn("removing old etcd static pods", "err", err)
			}
		}
		// Written beside it under a dot name (the kubelet ignores those), synced, renamed,
		// the directory synced: the kubelet never reads half a file, nor does a reboot.
		_, err = host.WriteFile(file, data, 0o600)
		return err
	}()
	if err != nil {
		a.Events.Event(corev1.EventTypeWarning, "EtcdChangeFailed",
			fmt.Sprintf("changing this node's etcd member to generation %d: %v", m.Generation, err))
		a.Log.Warn("changing the etcd member failed", "generation", m.Generation, "err", err)
		return
	}
	a.Events.Event(corev1.EventTypeNormal, "EtcdMemberChanged",
		fmt.Sprintf("this node's etcd member now runs generation %d's extra flags %s and image %s (%s); the kubelet restarts it",
			m.Generation, manifests.EtcdExtraArgsText(m.ExtraArgs), cmp.Or(m.Image, "unchanged"), m.Target))
	a.Log.Info("etcd member changed", "generation", m.Generation, "target", m.Target, "extraArgs", m.ExtraArgs)
}

// handOff hands the leadership of etcd on when this node's member leads. A failure is
// said and the change goes on: etcd's graceful stop tries the same, and an election
// without it only stalls writes for a moment.
func (a *Agent) handOff(ctx context.Context, local *corev1.Pod, generation int64) {
	if local == nil {
		return
	}
	endpoint, err := clientEndpoint(local)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, handOffTimeout)
		defer cancel()
		var to string
		if to, err = a.HandOff(ctx, endpoint); err == nil && to != "" {
			a.Events.Event(corev1.EventTypeNormal, "EtcdLeadershipHandedOff",
				fmt.Sprintf("this node's etcd member led; member %s leads now, before generation %d restarts it", to, generation))
			a.Log.Info("etcd leadership handed off", "to", to, "generation", generation)
		}
	}
	if err != nil {
		a.Events.Event(corev1.EventTypeWarning, "EtcdLeadershipKept",
			fmt.Sprintf("this node's etcd member may lead and could not hand its leadership on before generation %d restarts it (the others elect a leader): %v", generation, err))
		a.Log.Warn("handing etcd's leadership on failed", "generation", generation, "err", err)
	}
}

func (a *Agent) handOffWithClient(ctx context.Context, endpoint string) (string, error) {
	c, err := etcd.Dial([]string{endpoint}, a.PKIDir)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.HandOffLeadership(ctx, endpoint)
}

// clientEndpoint is the first client URL the member listens on (loopback first, as
// selfkube renders it), from the flags recorded on its static pod.
func clientEndpoint(p *corev1.Pod) (string, error) {
	m, err := manifests.EtcdMemberOf(p)
	return m.ClientURL, err
}

func (a *Agent) snapshotWithClient(ctx context.Context, endpoint, path string) (int64, int64, error) {
	c, err := etcd.Dial([]string{endpoint}, a.PKIDir)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	return c.Snapshot(ctx, path)
}

const (
	snapshotPrefix = "etcd-"
	snapshotSuffix = ".db"
	// scheduledInfix marks scheduled snapshots (etcd-<node>-scheduled-<time>.db), pruned
	// apart from those taken before changes.
	scheduledInfix = "-scheduled-"
	// replacedPrefix names the static pods a member change replaced (etcd.yaml.before-<time>).
	replacedPrefix = manifests.EtcdStaticPod + ".before-"
)

// prune removes all but the newest keep snapshots taken before changes of dir, all but the
// newest keepScheduled scheduled ones, and all but the newest keep static pods that member
// changes replaced. Other files (a snapshot saved by hand) stay.
func prune(dir string, keep, keepScheduled int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type file struct {
		name string
		mod  time.Time
	}
	var snaps, scheduled, replaced []file
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		if strings.HasPrefix(name, snapshotPrefix) && strings.HasSuffix(name, snapshotSuffix+".part") {
			_ = os.Remove(filepath.Join(dir, name)) // left by a killed agent
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, replacedPrefix):
			replaced = append(replaced, file{name, info.ModTime()})
		case strings.HasPrefix(name, snapshotPrefix) && strings.HasSuffix(name, snapshotSuffix) && strings.Contains(name, scheduledInfix):
			scheduled = append(scheduled, file{name, info.ModTime()})
		case strings.HasPrefix(name, snapshotPrefix) && strings.HasSuffix(name, snapshotSuffix):
			snaps = append(snaps, file{name, info.ModTime()})
		}
	}
	var errs []error
	for _, g := range []struct {
		files []file
		keep  int
	}{{snaps, keep}, {scheduled, keepScheduled}, {replaced, keep}} {
		files := g.files
		slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
		for i := g.keep; i < len(files); i++ {
			errs = append(errs, os.Remove(filepath.Join(dir, files[i].name)))
		}
	}
	return errors.Join(errs...)
}
