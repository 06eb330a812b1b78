package steer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/selfkube/selfkube/internal/component"
)

// ConditionServing is the readiness gate of the self-hosted apiserver's pods: the Gate
// sets it True once the pod's own listener answers /readyz through its probe slot, and
// False when that fails. A pod on the shared port cannot be probed by the kubelet (its
// probe, like any connection, may reach another pod's listener), so without this gate
// the DaemonSet controller would retire the old apiserver as soon as the new one
// listened.
const ConditionServing corev1.PodConditionType = "selfkube.io/apiserver-serving"

// The reasons of ConditionServing and of the Events on the pod.
const (
	ReasonServing    = "ReadyzPasses"
	ReasonNotServing = "ReadyzFails"
)

// GateChange is what GateDecide wants done to one pod's ConditionServing.
type GateChange struct {
	// Set says the condition must be written; Status is what to.
	Set    bool
	Status corev1.ConditionStatus
	// Reason and Message explain it, in the condition and in an Event.
	Reason, Message string
}

// GateDecide decides one pod's ConditionServing from what the agent knows of its
// listener: serving is the verdict, known says there is one. It does no I/O.
//
//	pod without the readiness gate          → nothing (not an apiserver this agent gates)
//	pod being deleted                       → nothing (it leaves; its listener's probes say the rest)
//	no verdict (no listener found, or one not probed enough to tell) → nothing
//	verdict serving, condition not True     → set True
//	verdict not serving, condition True     → set False
//	otherwise                               → nothing
//
// An unknown verdict changes nothing, so a restarted agent, which knows no listener for
// its first probes, does not take a serving apiserver out of its DaemonSet's count.
func GateDecide(pod *corev1.Pod, serving, known bool) GateChange {
	if !hasGate(pod) || pod.DeletionTimestamp != nil || !known {
		return GateChange{}
	}
	current := corev1.ConditionUnknown
	for _, c := range pod.Status.Conditions {
		if c.Type == ConditionServing {
			current = c.Status
		}
	}
	switch {
	case serving && current != corev1.ConditionTrue:
		return GateChange{Set: true, Status: corev1.ConditionTrue, Reason: ReasonServing,
			Message: "/readyz passes through this pod's own listener: new connections of the shared port may go to it"}
	case !serving && current == corev1.ConditionTrue:
		return GateChange{Set: true, Status: corev1.ConditionFalse, Reason: ReasonNotServing,
			Message: "/readyz fails through this pod's own listener: new connections of the shared port go to the other apiservers of the node"}
	}
	return GateChange{}
}

func hasGate(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == ConditionServing {
			return true
		}
	}
	return false
}

// Gate keeps ConditionServing of the pods on its node true to the agent's verdicts
// (Observe). It watches the node's kube-system pods, queues a pod when it or its
// verdict changes, decides with GateDecide, patches the pod's status and records an
// Event on the pod. It is a component.Component and a component.Readier (ready once its
// cache has synced).
type Gate struct {
	client kubernetes.Interface
	node   string
	events func() record.EventRecorder
	log    *slog.Logger
	life   component.Lifecycle

	factory informers.SharedInformerFactory
	pods    corelisters.PodLister
	synced  cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]
	cancel  context.CancelFunc
	done    sync.WaitGroup

	mu       sync.Mutex
	verdicts map[types.UID]bool // by pod UID; absent: unknown
}

// NewGate returns a Gate for the pods of namespace bound to nodeName. events gives the
// recorder once the Events component is initialized (nil records nothing).
func NewGate(client kubernetes.Interface, namespace, nodeName string, events func() record.EventRecorder, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gate{
		client:   client,
		node:     nodeName,
		events:   events,
		log:      log.With("component", "apiserver-gate", "node", nodeName),
		verdicts: map[types.UID]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "apiserver-gate"}),
	}
	g.life.Name = "apiserver readiness gate"
	g.factory = informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
		}))
	return g
}

// Observe takes the agent's verdicts, by pod UID (absent: unknown), and queues the pods
// whose verdict changed. It never blocks on the API.
func (g *Gate) Observe(verdicts map[types.UID]bool) {
	g.mu.Lock()
	var changed []types.UID
	for uid, v := range verdicts {
		if old, ok := g.verdicts[uid]; !ok || old != v {
			changed = append(changed, uid)
		}
	}
	for uid := range g.verdicts {
		if _, ok := verdicts[uid]; !ok {
			changed = append(changed, uid)
		}
	}
	g.verdicts = maps.Clone(verdicts)
	lister := g.pods
	g.mu.Unlock()
	if len(changed) == 0 || lister == nil {
		return
	}
	pods, err := lister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range pods {
		for _, uid := range changed {
			if p.UID == uid {
				g.enqueue(p)
			}
		}
	}
}

func (g *Gate) verdict(uid types.UID) (serving, known bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	serving, known = g.verdicts[uid]
	return serving, known
}

func (g *Gate) enqueue(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		g.queue.Add(key)
	}
}

// Init implements component.Component.
func (g *Gate) Init(_ context.Context) error {
	return g.life.Init(func() error {
		inf := g.factory.Core().V1().Pods()
		g.synced = inf.Informer().HasSynced
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    g.enqueue,
			UpdateFunc: func(_, obj any) { g.enqueue(obj) },
		}); err != nil {
			return fmt.Errorf("initializing the apiserver readiness gate: %w", err)
		}
		g.mu.Lock()
		g.pods = inf.Lister()
		g.mu.Unlock()
		return nil
	})
}

// Start implements component.Component: it starts the informer and one worker.
func (g *Gate) Start(ctx context.Context) error {
	return g.life.Start(func() error {
		ctx, g.cancel = context.WithCancel(ctx)
		g.factory.Start(ctx.Done())
		g.done.Add(1)
		go func() {
			defer g.done.Done()
			defer utilruntime.HandleCrash()
			if !cache.WaitForCacheSync(ctx.Done(), g.synced) {
				return
			}
			g.log.Info("apiserver readiness gate running")
			wait.UntilWithContext(ctx, g.work, time.Second)
		}()
		return nil
	})
}

// Stop implements component.Component.
func (g *Gate) Stop() error {
	return g.life.Stop(func(from component.State) error {
		if from == component.Running {
			g.cancel()
			g.queue.ShutDown()
			g.done.Wait()
			g.factory.Shutdown()
		}
		return nil
	})
}

// Ready implements component.Readier.
func (g *Gate) Ready() error {
	if g.synced != nil && g.synced() {
		return nil
	}
	return fmt.Errorf("apiserver readiness gate: the pods of this node are not listed yet")
}

func (g *Gate) work(ctx context.Context) {
	for {
		key, quit := g.queue.Get()
		if quit {
			return
		}
		if err := g.sync(ctx, key); err != nil {
			g.log.Warn("setting an apiserver pod's readiness gate failed; retrying", "pod", key, "err", err)
			g.queue.AddRateLimited(key)
		} else {
			g.queue.Forget(key)
		}
		g.queue.Done(key)
	}
}

func (g *Gate) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := g.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != g.node {
		return nil // the informer lists this node's pods only; a verdict is never about another's
	}
	serving, known := g.verdict(pod.UID)
	ch := GateDecide(pod, serving, known)
	if !ch.Set {
		return nil
	}
	patch, err := conditionPatch(pod.UID, corev1.PodCondition{
		Type: ConditionServing, Status: ch.Status, Reason: ch.Reason, Message: ch.Message,
		LastTransitionTime: metav1.Now(),
	})
	if err != nil {
		return err
	}
	_, err = g.client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or another pod of that name now: its own event queues it
	}
	if err != nil {
		return fmt.Errorf("patching the status of pod %s: %w", key, err)
	}
	eventType := corev1.EventTypeNormal
	if ch.Status != corev1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	if g.events != nil {
		if rec := g.events(); rec != nil {
			rec.Event(pod, eventType, ch.Reason, ch.Message)
		}
	}
	g.log.Info(fmt.Sprintf("pod %s: %s=%s", key, ConditionServing, ch.Status), "reason", ch.Reason)
	return nil
}

// conditionPatch is a strategic merge patch of a pod's status that sets one condition
// (conditions merge by type), with the pod's UID as a precondition: a patch meant for
// a pod never reaches a new pod of the same name.
func conditionPatch(uid types.UID, c corev1.PodCondition) ([]byte, error) {
	return json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": uid},
		"status":   map[string]any{"conditions": []corev1.PodCondition{c}},
	})
}
