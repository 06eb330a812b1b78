// Package agent is the checkpointer at work on a node: it observes the API and the
// container runtime (over CRI), keeps the checkpoints of package checkpoint up to date,
// carries out what checkpoint.Next decides, retires a checkpoint that serves on the
// node's address behind a fence (package fence), and counts what it did in Metrics.
// `selfkube checkpointer` runs it (Components, run by component.Run); `selfkube
// checkpointer boot` activates the checkpoints a rebooted node needs before the kubelet
// starts (Boot).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/fence"
	"github.com/selfkube/selfkube/internal/node"
)

// Agent is the checkpointer of one node. It is a component.Component (see the state
// diagram there) and a component.Healther:
//
//	Init  checks the fields and removes a fence a killed checkpointer left behind
//	Start every Interval: Sync (observe the API and the runtime, refresh checkpoints,
//	      decide with checkpoint.Next, act)
//	Stop  ends the syncs and waits for the one under way, leaving every checkpoint as it
//	      is, and releases what Components opened
//	Healthy  nil while syncs keep running (one within the last 30 s)
//
// Leaving the checkpoints is right: an active checkpoint is what keeps the control plane
// up, and a checkpointer that restarts picks up where it stopped. Sync may also be called
// on its own, without the lifecycle.
//
// Which pods count: only pods of Namespace annotated with checkpoint.AnnotationCheckpoint
// that are not mirror pods, whose controller is a DaemonSet or a ReplicaSet, and whose
// annotation is a valid checkpoint name (checkpoint.ValidName). A node can create mirror
// pods in any namespace with any annotations, but NodeRestriction lets it give them no
// owner but its own Node. Every other annotated pod is ignored, with one CheckpointIgnored Event per
// pod. Pods bound to other nodes only tell whether a checkpoint's component is Ready
// elsewhere: the checkpoints decided on are those on this node's disk and those of pods
// bound to this node.
type Agent struct {
	Client   kubernetes.Interface
	Runtime  Runtime
	Store    checkpoint.Store
	NodeName string
	// Namespace whose annotated pods are checkpointed (kube-system).
	Namespace string
	// Interval between syncs, and Timeout of each observation.
	Interval, Timeout time.Duration
	// RefreshEvery bounds how long an unchanged checkpoint goes without re-reading its
	// Secrets (so rotated certificates reach it).
	RefreshEvery time.Duration
	Log          *slog.Logger
	Events       component.EventSink
	Metrics      *Metrics
	Now          func() time.Time
	// Fence, if set, holds new connections while a checkpoint that serves on the node's
	// address (checkpoint.AnnotationCheckpointFencePort) is retired.
	Fence fence.Fence
	// Sleep waits during a fenced hand-back (time.Sleep if nil).
	Sleep func(time.Duration)

	states map[string]checkpoint.State
	// lastStandIn holds the checkpoints said to be the last stand-in (one Warning each).
	lastStandIn map[string]bool
	refreshed   map[string]refresh
	// ignored: the pods ignored in the last pod list, each reported once.
	ignored map[types.UID]bool

	life   component.Lifecycle
	cancel context.CancelFunc
	done   chan struct{}
	// release closes what Components opened; metricsAddr is only logged.
	release     func()
	metricsAddr string
}

// healthyWithin is how long the agent stays healthy without a sync.
const healthyWithin = 30 * time.Second

type refresh struct {
	version string // UID and resourceVersion of the pod checkpointed
	at      time.Time
}

// fenceClearer is a Fence that can remove a fence left behind (fence.NFTables).
type fenceClearer interface {
	Clear() error
}

// Init implements component.Component.
func (a *Agent) Init(_ context.Context) error {
	return a.life.Init(func() error {
		var errs []error
		if a.NodeName == "" {
			errs = append(errs, errors.New("no node name"))
		}
		if a.Client == nil {
			errs = append(errs, errors.New("no Kubernetes client"))
		}
		if a.Runtime == nil {
			errs = append(errs, errors.New("no container runtime"))
		}
		if a.Interval <= 0 || a.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("interval %s, timeout %s: must be positive", a.Interval, a.Timeout))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("initializing the checkpointer: %w", err)
		}
		if a.Log == nil {
			a.Log = slog.New(slog.DiscardHandler)
		}
		if a.Now == nil {
			a.Now = time.Now
		}
		if a.Metrics == nil {
			a.Metrics = NewMetrics()
		}
		if c, ok := a.Fence.(fenceClearer); ok {
			if err := c.Clear(); err != nil {
				a.Log.Warn("cannot check for a fence left behind; hand-backs will not hold connections", "err", err)
			}
		}
		return nil
	})
}

// Start implements component.Component: it syncs at once and every Interval until ctx
// ends or Stop is called.
func (a *Agent) Start(ctx context.Context) error {
	return a.life.Start(func() error {
		ctx, a.cancel = context.WithCancel(ctx)
		a.done = make(chan struct{})
		go func() {
			defer close(a.done)
			a.loop(ctx)
		}()
		a.Log.Info("checkpointer started", "node", a.NodeName, "checkpoints", a.Store.Dir, "metrics", a.metricsAddr)
		return nil
	})
}

// Stop implements component.Component. It leaves every checkpoint as it is.
func (a *Agent) Stop() error {
	return a.life.Stop(func(from component.State) error {
		if from == component.Running {
			a.cancel()
			<-a.done
		}
		if a.release != nil {
			a.release()
		}
		return nil
	})
}

// Healthy implements component.Healther: nil while syncs keep running.
func (a *Agent) Healthy() error {
	if a.Metrics == nil || a.Now == nil {
		return errors.New("the checkpointer is not initialized")
	}
	return a.Metrics.Healthy(a.Now(), healthyWithin)
}

func (a *Agent) loop(ctx context.Context) {
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		if err := a.Sync(ctx); err != nil {
			a.Log.Warn("checkpoint sync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// parents are the pods of one checkpoint.
type parents struct {
	bound          bool
	ready          *corev1.Pod // newest Ready pod here whose containers run here now
	readyElsewhere bool
}

// Sync is one round: observe, refresh, decide, act.
func (a *Agent) Sync(ctx context.Context) error {
	if a.states == nil {
		a.states, a.refreshed, a.lastStandIn = map[string]checkpoint.State{}, map[string]refresh{}, map[string]bool{}
	}
	now := a.Now()
	octx, cancel := context.WithTimeout(ctx, a.Timeout)
	local, err := a.Runtime.Observe(octx)
	cancel()
	if err != nil {
		// Without the runtime nothing is known of what runs here: decide nothing.
		return fmt.Errorf("observing the container runtime: %w", err)
	}
	octx, cancel = context.WithTimeout(ctx, a.Timeout)
	pods, err := a.Client.CoreV1().Pods(a.Namespace).List(octx, metav1.ListOptions{})
	cancel()
	reachable := err == nil
	if !reachable {
		a.Log.Debug("API unreachable", "err", err)
	}
	byName := map[string]*parents{}
	if reachable {
		var ignored []ignoredPod
		byName, ignored = a.parents(pods.Items, local)
		a.reportIgnored(ignored)
		for name, p := range byName {
			if p.ready != nil {
				if err := a.refresh(ctx, name, p.ready, now); err != nil {
					a.Log.Warn("refreshing checkpoint", "checkpoint", name, "err", err)
				}
			}
		}
	}
	a.Metrics.setReachable(reachable, now)

	names, err := a.Store.Names()
	if err != nil {
		return err
	}
	for name, p := range byName {
		// A name only pods on other nodes have stays out: they may tell that a checkpoint
		// of this node is Ready elsewhere, but never make one.
		if p.bound && !contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	unlock, err := a.Store.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, name := range names {
		p := byName[name]
		if p == nil {
			p = &parents{}
		}
		o := checkpoint.Observed{
			At: now, APIReachable: reachable,
			ParentBound: p.bound, ParentReady: p.ready != nil, ReadyElsewhere: p.readyElsewhere,
			ParentRunning: local.Running[name],
			Present:       a.Store.Present(name), Active: a.Store.Active(name),
		}
		prev, seen := a.states[name]
		s, action := checkpoint.Next(prev, o)
		a.states[name] = s
		if !seen && o.Active && a.Events != nil {
			// Activated before this agent ran: at boot, or by a checkpointer before it.
			a.Events.Event(corev1.EventTypeNormal, "CheckpointActive", fmt.Sprintf("checkpoint %s on node %s was active when the checkpointer started (activated at boot); it is retired once a self-hosted pod is Ready", name, a.NodeName))
		}
		if err := a.act(name, action, p.ready); err != nil {
			return err
		}
		switch last := checkpoint.LastStandIn(s, o); {
		case last && !a.lastStandIn[name] && a.Events != nil:
			a.Events.Event(corev1.EventTypeWarning, "CheckpointLastStandIn", fmt.Sprintf(
				"checkpoint %s on node %s stands in for a component with no pod on any node for %s (its DaemonSet or Deployment deleted?); "+
					"it keeps running until one is Ready again: the operator, or `selfkube recover` on a control-plane node, creates the workload again",
				name, a.NodeName, checkpoint.RemoveAfter))
			a.lastStandIn[name] = true
		case !last:
			delete(a.lastStandIn, name)
		}
		a.Metrics.setActive(name, o.Active && action != checkpoint.Retire && action != checkpoint.Remove || action == checkpoint.Activate)
	}
	return nil
}

// ignoredPod is an annotated pod that does not count, and why.
type ignoredPod struct {
	pod  *corev1.Pod
	name string // its annotation
	why  string
}

// parents groups the annotated pods that count (see Agent) by checkpoint, and returns
// those that do not. A pod here counts as Ready only when its containers are the ones
// running now: after a reboot the API still shows the statuses from before it.
func (a *Agent) parents(pods []corev1.Pod, local Local) (map[string]*parents, []ignoredPod) {
	out := map[string]*parents{}
	var ignored []ignoredPod
	for i := range pods {
		pod := &pods[i]
		name, annotated := pod.Annotations[checkpoint.AnnotationCheckpoint]
		if !annotated {
			continue
		}
		if why := a.distrust(pod, name); why != "" {
			ignored = append(ignored, ignoredPod{pod: pod, name: name, why: why})
			continue
		}
		if pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" {
			continue
		}
		p := out[name]
		if p == nil {
			p = &parents{}
			out[name] = p
		}
		// node.PodReady also refuses a terminating pod; such pods were skipped above.
		ready := node.PodReady(pod)
		if pod.Spec.NodeName != a.NodeName {
			p.readyElsewhere = p.readyElsewhere || ready
			continue
		}
		p.bound = true
		if ready && runsHere(pod, local) && (p.ready == nil || pod.CreationTimestamp.After(p.ready.CreationTimestamp.Time)) {
			p.ready = pod
		}
	}
	return out, ignored
}

// distrust is why an annotated pod does not count, or "" when it does.
func (a *Agent) distrust(pod *corev1.Pod, name string) string {
	if pod.Namespace != a.Namespace {
		return "it is not in namespace " + a.Namespace
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return "it is a mirror pod, which any node can create"
	}
	if !controlledBySelfkube(metav1.GetControllerOf(pod)) {
		return "its controller is not a DaemonSet or a ReplicaSet"
	}
	if err := checkpoint.ValidName(name); err != nil {
		return err.Error()
	}
	return ""
}

// controlledBySelfkube reports whether a pod's controller is of a kind selfkube runs its
// control plane with: the apiserver's DaemonSet, or the ReplicaSet of a Deployment.
func controlledBySelfkube(ref *metav1.OwnerReference) bool {
	if ref == nil {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == "apps" && (ref.Kind == "DaemonSet" || ref.Kind == "ReplicaSet")
}

// reportIgnored logs and records an Event for each pod ignored for the first time, and
// forgets the pods no longer in the list.
func (a *Agent) reportIgnored(ignored []ignoredPod) {
	seen := make(map[types.UID]bool, len(ignored))
	for _, ig := range ignored {
		seen[ig.pod.UID] = true
		if a.ignored[ig.pod.UID] {
			continue
		}
		msg := fmt.Sprintf("checkpointer on node %s ignores pod %s/%s (node %q) annotated %s=%s: %s",
			a.NodeName, ig.pod.Namespace, ig.pod.Name, ig.pod.Spec.NodeName, checkpoint.AnnotationCheckpoint, checkpoint.QuoteName(ig.name), ig.why)
		a.Log.Warn("ignoring an annotated pod", "pod", ig.pod.Namespace+"/"+ig.pod.Name, "node", ig.pod.Spec.NodeName,
			"checkpoint", checkpoint.QuoteName(ig.name), "reason", ig.why)
		if a.Events != nil {
			a.Events.Event(corev1.EventTypeWarning, "CheckpointIgnored", msg)
		}
	}
	a.ignored = seen
}

func runsHere(pod *corev1.Pod, local Local) bool {
	if len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		_, id, ok := strings.Cut(cs.ContainerID, "://")
		if !ok || !local.Containers[id] {
			return false
		}
	}
	return true
}

// refresh writes the checkpoint of pod when the pod changed or RefreshEvery passed.
func (a *Agent) refresh(ctx context.Context, name string, pod *corev1.Pod, now time.Time) error {
	version := string(pod.UID) + "/" + pod.ResourceVersion
	if r, ok := a.refreshed[name]; ok && r.version == version && now.Sub(r.at) < a.RefreshEvery && a.Store.Present(name) {
		return nil
	}
	dir, err := a.Store.DirOf(name)
	if err != nil {
		return err
	}
	changed, err := Write(ctx, a.Client, a.Store, name, dir, pod)
	if err != nil {
		return err
	}
	a.refreshed[name] = refresh{version: version, at: now}
	if changed {
		a.Log.Info("checkpoint written", "checkpoint", name, "pod", pod.Name)
		a.Metrics.countWrite(name)
	}
	return nil
}

// act carries out action; parent is the Ready pod the checkpoint hands back to, if any.
func (a *Agent) act(name string, action checkpoint.Action, parent *corev1.Pod) error {
	var err error
	var msg string
	switch action {
	case checkpoint.None:
		return nil
	case checkpoint.Activate:
		err = a.Store.Activate(name)
		msg = fmt.Sprintf("activated checkpoint %s on node %s: its pods cannot come from the API now, so the kubelet runs the checkpoint", name, a.NodeName)
	case checkpoint.Retire:
		err = a.retire(name, parent)
		msg = fmt.Sprintf("retired checkpoint %s on node %s: a self-hosted pod is Ready and runs here again", name, a.NodeName)
	case checkpoint.Remove:
		err = a.Store.Remove(name)
		msg = fmt.Sprintf("removed checkpoint %s on node %s: no pod of it has been bound here for %s", name, a.NodeName, checkpoint.RemoveAfter)
	}
	if err != nil {
		return err
	}
	a.Log.Info(msg, "checkpoint", name, "action", string(action))
	a.Metrics.count(name, action)
	if a.Events != nil {
		a.Events.Event(corev1.EventTypeNormal, "Checkpoint"+string(action)+"d", msg)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// retire retires a checkpoint; when it serves on the node's address, behind a fence
// (see package fence), so that no connection reaches its listener as it closes.
func (a *Agent) retire(name string, parent *corev1.Pod) error {
	addr, fenced := fenceAddr(parent)
	if !fenced || a.Fence == nil {
		return a.Store.Retire(name)
	}
	sleep := a.Sleep
	if sleep == nil {
		sleep = time.Sleep
	}
	return fence.Fenced(a.Fence, addr, sleep, a.Log.With("checkpoint", name), func() error { return a.Store.Retire(name) })
}

// fenceAddr is the node address and port a parent's checkpoint serves on, if it names one.
func fenceAddr(parent *corev1.Pod) (netip.AddrPort, bool) {
	if parent == nil {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(parent.Annotations[checkpoint.AnnotationCheckpointFencePort], 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(parent.Status.HostIP)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// Write writes checkpoint name of pod into store: the pod sanitized (see
// checkpoint.Sanitize), with the Secrets and ConfigMaps it mounts as read from the API
// now. hostDir is the checkpoint's directory as the kubelet sees it, where the static
// pod's volumes point. It reports whether anything on disk changed. The checkpointer
// writes its checkpoints so, and `selfkube recover` the stand-in of a component whose
// replicas all ran on lost nodes.
func Write(ctx context.Context, cs kubernetes.Interface, store checkpoint.Store, name, hostDir string, pod *corev1.Pod) (bool, error) {
	src := checkpoint.Sources{Secrets: map[string]*corev1.Secret{}, ConfigMaps: map[string]*corev1.ConfigMap{}}
	secrets, configMaps := checkpoint.SourceNames(&pod.Spec)
	for _, n := range secrets {
		s, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading Secret %s/%s: %w", pod.Namespace, n, err)
		}
		src.Secrets[n] = s
	}
	for _, n := range configMaps {
		cm, err := cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading ConfigMap %s/%s: %w", pod.Namespace, n, err)
		}
		src.ConfigMaps[n] = cm
	}
	static, files, err := checkpoint.Sanitize(pod, name, hostDir, src)
	if err != nil {
		return false, err
	}
	unlock, err := store.Lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	return store.Write(name, static, files)
}
