package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
)

// Controller rolls the ControlPlane resource out as Decide says. It is the
// sample-controller shape: informers (the ControlPlane, and in kube-system the control
// plane's DaemonSet, Deployments, ReplicaSets and pods) whose every change queues the
// one key, a worker that observes, decides and acts, the outcome in the resource's
// status conditions and in Events on it.
type Controller struct {
	client      kubernetes.Interface
	dyn         dynamic.Interface
	applier     *apply.Applier
	restConfig  *rest.Config
	controls    cache.GenericLister
	daemonSets  appslisters.DaemonSetLister
	deployments appslisters.DeploymentLister
	replicaSets appslisters.ReplicaSetLister
	pods        corelisters.PodLister
	etcdPods    corelisters.PodLister
	nodes       corelisters.NodeLister
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]
	events      record.EventRecorder
	log         *slog.Logger
	now         func() time.Time
	// etcdAddresses is the client address each control-plane node's etcd member last
	// advertised, by node name (etcdMembers).
	etcdAddresses map[string]string
	// kubeadmVersion is the version kubeadm-config was last found or made to say.
	kubeadmVersion string
}

// ComponentPods selects the workloads, ReplicaSets and pods of the components the
// operator changes (each labelled with its name).
func ComponentPods() labels.Selector {
	req, err := labels.NewRequirement(manifests.LabelName, selection.In, controlplane.Workloads)
	if err != nil {
		return labels.Nothing() // fixed names: cannot happen
	}
	return labels.NewSelector().Add(*req)
}

// EtcdPods selects the mirror pods of the etcd members.
func EtcdPods() labels.Selector {
	return labels.SelectorFromSet(labels.Set{manifests.EtcdLabelComponent: manifests.EtcdComponent})
}

// New wires a Controller to its informers: controls (ControlPlanes, from a dynamic
// informer factory), kubeSystem (a factory of the kube-system namespace, whose pods are
// narrowed to ComponentPods by the caller), etcdPods (kube-system pods narrowed to
// EtcdPods) and nodes; the caller starts their factories.
func New(cfg *rest.Config, client kubernetes.Interface, dyn dynamic.Interface, applier *apply.Applier,
	controls cache.SharedIndexInformer, kubeSystem informers.SharedInformerFactory,
	etcdPods coreinformers.PodInformer, nodes coreinformers.NodeInformer,
	events record.EventRecorder, log *slog.Logger) (*Controller, error) {
	ds := kubeSystem.Apps().V1().DaemonSets()
	deploy := kubeSystem.Apps().V1().Deployments()
	rs := kubeSystem.Apps().V1().ReplicaSets()
	pods := kubeSystem.Core().V1().Pods()
	c := &Controller{
		client: client, dyn: dyn, applier: applier, restConfig: cfg,
		controls:    cache.NewGenericLister(controls.GetIndexer(), controlplane.GroupVersionResource.GroupResource()),
		daemonSets:  ds.Lister(),
		deployments: deploy.Lister(),
		replicaSets: rs.Lister(),
		pods:        pods.Lister(),
		etcdPods:    etcdPods.Lister(),
		nodes:       nodes.Lister(),
		synced: []cache.InformerSynced{controls.HasSynced, ds.Informer().HasSynced, deploy.Informer().HasSynced,
			rs.Informer().HasSynced, pods.Informer().HasSynced, etcdPods.Informer().HasSynced, nodes.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "controlplane"}),
		events: events,
		log:    log,
		now:    time.Now,
	}
	// Every change of the resource or of a workload it governs is a reason to look.
	enqueue := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.queue.Add(controlplane.Name) },
		UpdateFunc: func(any, any) { c.queue.Add(controlplane.Name) },
		DeleteFunc: func(any) { c.queue.Add(controlplane.Name) },
	}
	for _, inf := range []cache.SharedIndexInformer{controls, ds.Informer(), deploy.Informer(), rs.Informer(), pods.Informer(),
		etcdPods.Informer(), nodes.Informer()} {
		if _, err := inf.AddEventHandler(enqueue); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run runs the one worker until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("the ControlPlane and workload caches did not sync: %w", ctx.Err())
	}
	c.log.Info("control-plane operator running")
	go wait.UntilWithContext(ctx, c.work, time.Second)
	<-ctx.Done()
	return nil
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		after, err := c.sync(ctx)
		switch {
		case apierrors.IsConflict(err):
			// The status changed meanwhile (a node agent reported a snapshot): look again.
			c.log.Debug("the ControlPlane changed meanwhile; looking again", "err", err)
			c.queue.AddRateLimited(key)
		case err != nil:
			c.log.Warn("reconciling the control plane failed; retrying", "err", err)
			c.queue.AddRateLimited(key)
		case after > 0:
			c.queue.Forget(key)
			c.queue.AddAfter(key, after)
		default:
			c.queue.Forget(key)
		}
		c.queue.Done(key)
	}
}

// sync observes, decides and acts once; it returns when to look again.
func (c *Controller) sync(ctx context.Context) (time.Duration, error) {
	obj, err := c.controls.Get(controlplane.Name)
	if apierrors.IsNotFound(err) {
		return 0, nil // no resource: nothing to roll out
	}
	if err != nil {
		return 0, err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return 0, fmt.Errorf("the ControlPlane is a %T", obj)
	}
	cp, err := controlplane.FromUnstructured(u)
	if err != nil {
		return 0, err
	}
	cluster, err := manifests.ReadClusterConfig(ctx, c.client)
	if err != nil {
		return 0, err
	}
	members, err := c.etcdMembers(cluster)
	if err != nil {
		return 0, err
	}
	// render renders the workloads of a target once per sync: observing and applying
	// the same target share them.
	rendered := map[controlplane.Target]map[string]runtime.Object{}
	render := func(t controlplane.Target) (map[string]runtime.Object, error) {
		if w, ok := rendered[t]; ok {
			return w, nil
		}
		s := cp.Spec
		if t == controlplane.TargetLastKnownGood {
			s = cp.Status.LastKnownGood.Spec
		}
		w, err := manifests.Workloads(s.Configure(cluster), members)
		if err == nil {
			rendered[t] = w
		}
		return w, err
	}

	state := State{Generation: cp.Generation, Spec: cp.Spec, Status: cp.Status, Now: c.now()}
	if errs := cp.Spec.Validate(); len(errs) > 0 {
		state.Invalid = errs.ToAggregate().Error()
	} else if cluster.Etcd.Local == nil && (len(cp.Spec.Etcd.ExtraArgs) > 0 || cp.Spec.Etcd.Version != "") {
		state.Invalid = "spec.etcd: this cluster's etcd is external; selfkube does not run it"
	} else if why := etcdVersionChange(cp, cluster); why != "" {
		state.Invalid = why
	}
	target := TargetOf(cp.Status, cp.Generation)
	if state.Invalid == "" || target == controlplane.TargetLastKnownGood {
		workloads, err := render(target)
		if err != nil {
			return 0, err
		}
		pods, err := c.pods.Pods(manifests.Namespace).List(ComponentPods())
		if err != nil {
			return 0, err
		}
		down, err := c.downNodes()
		if err != nil {
			return 0, err
		}
		if cluster.Etcd.Local != nil {
			o, err := c.observeEtcd(cp, target, cluster)
			if err != nil {
				return 0, err
			}
			state.Components = append(state.Components, o)
		}
		for _, name := range controlplane.Workloads {
			want, ok := workloads[name]
			if !ok {
				continue // the pod network of a cluster whose network plugin is not selfkube's
			}
			o, err := c.observe(ctx, name, want, pods, down)
			if target == controlplane.TargetSpec && (apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) {
				// The API server refuses what the spec renders to (a limit below a
				// request, say): the spec is not valid either, and nothing is changed.
				state.Invalid, state.Components = fmt.Sprintf("the API server refuses %s as the spec makes it: %v", name, err), nil
				break
			}
			if err != nil {
				return 0, err
			}
			state.Components = append(state.Components, o)
		}
	}

	d := Decide(state)
	// What the roll-out waits for, in the log too when it changes (`kubectl logs`).
	if now, was := meta.FindStatusCondition(d.Status.Conditions, controlplane.ConditionProgressing),
		meta.FindStatusCondition(cp.Status.Conditions, controlplane.ConditionProgressing); now != nil && (was == nil || was.Message != now.Message) {
		c.log.Info("progressing: "+now.Message, "reason", now.Reason, "generation", cp.Generation)
	}
	// The status first: a roll-out is recorded (with its start, which its timeout counts
	// from) before the workload changes, never the other way round.
	if !reflect.DeepEqual(d.Status, cp.Status) {
		if err := c.writeStatus(ctx, u, d.Status); err != nil {
			return 0, err
		}
	}
	if lkg := d.Status.LastKnownGood; lkg != nil && lkg.Generation == cp.Generation && c.kubeadmVersion != lkg.Spec.KubernetesVersion {
		// Best effort: kubeadm-config is for stock kubeadm joins, and nothing of the roll-
		// out waits for it; it is tried again on the next look.
		if err := c.refreshKubeadmConfig(ctx, lkg.Spec.KubernetesVersion); err != nil {
			c.log.Warn("saying the control plane's version in kubeadm-config failed; trying again later", "err", err)
		}
	}
	if len(d.Apply) > 0 {
		workloads, err := render(d.Target)
		if err != nil {
			return 0, err
		}
		for _, name := range d.Apply {
			if workloads[name] == nil {
				return 0, fmt.Errorf("applying %s: the spec renders no such workload", name)
			}
			c.log.Info("applying", "component", name, "target", d.Target, "generation", cp.Generation)
			if err := c.applier.Object(ctx, workloads[name]); err != nil {
				return 0, fmt.Errorf("applying %s: %w", name, err)
			}
		}
	}
	if e := d.Event; e != nil {
		kind := corev1.EventTypeNormal
		if e.Warning {
			kind = corev1.EventTypeWarning
		}
		ref := &corev1.ObjectReference{APIVersion: controlplane.Group + "/" + controlplane.Version, Kind: controlplane.Kind,
			Name: cp.Name, UID: cp.UID, ResourceVersion: cp.ResourceVersion}
		c.events.Event(ref, kind, e.Reason, e.Message)
		c.log.Info(e.Message, "reason", e.Reason)
	}
	return d.RequeueAfter, nil
}

// etcdVersionChange says why the spec's etcd version may not be rolled out from what the
// members run (the last-known-good spec's version, else the published configuration's);
// "" when it may (controlplane.EtcdVersionChange).
func etcdVersionChange(cp *controlplane.ControlPlane, cluster config.ClusterConfiguration) string {
	from := cluster.EtcdVersion
	if lkg := cp.Status.LastKnownGood; lkg != nil && lkg.Spec.Etcd.Version != "" {
		from = lkg.Spec.Etcd.Version
	}
	return controlplane.EtcdVersionChange(from, cp.Spec.Etcd.Version)
}

// refreshKubeadmConfig says version in kubeadm-config, where a stock `kubeadm join`
// reads the control plane's version, once that version runs healthy everywhere. A
// cluster without kubeadm-config (made before it existed) is left as it is.
func (c *Controller) refreshKubeadmConfig(ctx context.Context, version string) error {
	cms := c.client.CoreV1().ConfigMaps(manifests.Namespace)
	cm, err := cms.Get(ctx, manifests.KubeadmConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.kubeadmVersion = version
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", manifests.KubeadmConfigName, err)
	}
	out, changed, err := manifests.KubeadmConfigWithVersion(cm, version)
	if err != nil {
		return err
	}
	if changed {
		if _, err := cms.Update(ctx, out, metav1.UpdateOptions{FieldManager: apply.FieldManager}); err != nil {
			return fmt.Errorf("writing %s: %w", manifests.KubeadmConfigName, err)
		}
		c.log.Info("kubeadm-config now says the control plane's version", "kubernetesVersion", version)
	}
	c.kubeadmVersion = version
	return nil
}

// writeStatus replaces the status of the ControlPlane u with st (an update of the status
// subresource: a conflict means the resource changed, and the next look decides anew).
func (c *Controller) writeStatus(ctx context.Context, u *unstructured.Unstructured, st controlplane.Status) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var content map[string]any
	if err := json.Unmarshal(raw, &content); err != nil {
		return err
	}
	out := u.DeepCopy()
	out.Object["status"] = content
	_, err = c.dyn.Resource(controlplane.GroupVersionResource).UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: apply.FieldManager})
	if err != nil {
		return fmt.Errorf("writing the ControlPlane's status: %w", err)
	}
	return nil
}

// observe sees component against its target workload want; pods are the control
// plane's pods (ComponentPods), of which it judges the component's own.
func (c *Controller) observe(ctx context.Context, component string, want runtime.Object, pods []*corev1.Pod, down map[string]bool) (Observed, error) {
	o := Observed{Component: component, Status: controlplane.ComponentStatus{Name: component}}
	var generation int64
	var owned []*corev1.Pod
	var template corev1.PodTemplateSpec
	switch want.(type) {
	case *appsv1.DaemonSet:
		ds, err := c.daemonSets.DaemonSets(manifests.Namespace).Get(component)
		if apierrors.IsNotFound(err) {
			o.Waiting, o.Missing = "its DaemonSet does not exist", true
			return o, nil
		}
		if err != nil {
			return o, err
		}
		generation, template = ds.Generation, ds.Spec.Template
		owned = ownedPods(pods, ds.UID)
		o.Status, o.Waiting = daemonSetHealth(ds, owned, down)
		// Healthy but for nodes that are down: not healthy (a roll-out of it waits), but
		// no reason to hold the rest (DownOnly).
		if _, strict := daemonSetHealth(ds, owned, nil); o.Waiting == "" && strict != "" {
			o.Waiting, o.DownOnly = strict+" (on a node that is down)", true
		}
	case *appsv1.Deployment:
		d, err := c.deployments.Deployments(manifests.Namespace).Get(component)
		if apierrors.IsNotFound(err) {
			o.Waiting, o.Missing = "its Deployment does not exist", true
			return o, nil
		}
		if err != nil {
			return o, err
		}
		generation, template = d.Generation, d.Spec.Template
		sets, err := c.replicaSets.ReplicaSets(manifests.Namespace).List(labels.Everything())
		if err != nil {
			return o, err
		}
		var owners []types.UID
		for _, rs := range sets {
			if ref := metav1.GetControllerOf(rs); ref != nil && ref.UID == d.UID {
				owners = append(owners, rs.UID)
			}
		}
		owned = ownedPods(pods, owners...)
		o.Status, o.Waiting = deploymentHealth(d, owned)
	default:
		return o, fmt.Errorf("%s is a %T", component, want)
	}
	// A dry-run apply that would change the spec would raise the generation. It runs only
	// on an object that exists (Decide says what to do with a missing one).
	dry, err := c.applier.DryRun(ctx, want)
	if err != nil {
		return o, fmt.Errorf("comparing %s with its target: %w", component, err)
	}
	o.Matches = dry.GetGeneration() == generation
	if !o.Matches {
		if live, target := etcdServers(template), etcdServers(podTemplate(want)); live != target {
			o.Refresh = fmt.Sprintf("the etcd members changed (--etcd-servers %s → %s)", live, target)
		}
	}
	o.Failure = podFailure(currentRevision(owned, template))
	if (o.Waiting == "" || o.DownOnly) && component == manifests.APIServer {
		var up []*corev1.Pod
		for _, p := range owned {
			if !down[p.Spec.NodeName] {
				up = append(up, p)
			}
		}
		if w := c.serving(ctx, up); w != "" {
			o.Waiting, o.DownOnly = w, false
		}
	}
	o.Healthy = o.Waiting == ""
	return o, nil
}

// downNodes are the nodes whose Ready condition is not True, by name.
func (c *Controller) downNodes() (map[string]bool, error) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	down := map[string]bool{}
	for _, n := range nodes {
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready = cond.Status == corev1.ConditionTrue
			}
		}
		if !ready {
			down[n.Name] = true
		}
	}
	return down, nil
}

// etcdMembers are the addresses of the local etcd members, which every apiserver lists,
// one per control-plane node (nil with an external etcd): the address its member
// advertises to clients (the flags its mirror pod records), else the one it advertised
// when last seen (its mirror pod is gone for a moment while the kubelet restarts the
// member), else the node's InternalIP. A node that is down stays in the list (it is a
// member still); a node joins the list once its join labels it, after its member was
// added.
func (c *Controller) etcdMembers(cluster config.ClusterConfiguration) ([]string, error) {
	if cluster.Etcd.Local == nil {
		return nil, nil
	}
	nodes, err := c.nodes.List(labels.SelectorFromSet(labels.Set{node.LabelControlPlane: ""}))
	if err != nil {
		return nil, err
	}
	pods, err := c.etcdPods.Pods(manifests.Namespace).List(EtcdPods())
	if err != nil {
		return nil, err
	}
	if c.etcdAddresses == nil {
		c.etcdAddresses = map[string]string{}
	}
	for _, p := range pods {
		if a := advertisedClientAddress(p); a != "" && p.Spec.NodeName != "" {
			c.etcdAddresses[p.Spec.NodeName] = a
		}
	}
	var out []string
	for _, n := range nodes {
		if a, ok := c.etcdAddresses[n.Name]; ok {
			out = append(out, a)
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				out = append(out, a.Address)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// advertisedClientAddress is the host of the first client URL the etcd member of mirror
// pod p advertises (manifests.AnnotationEtcdFlags), or "".
func advertisedClientAddress(p *corev1.Pod) string {
	m, err := manifests.EtcdMemberOf(p)
	if err != nil {
		return ""
	}
	u, err := url.Parse(m.AdvertisedClientURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// observeEtcd sees the etcd members of the control-plane nodes against the target's
// extra flags.
func (c *Controller) observeEtcd(cp *controlplane.ControlPlane, target controlplane.Target, cluster config.ClusterConfiguration) (Observed, error) {
	s := cp.Spec
	if target == controlplane.TargetLastKnownGood {
		s = cp.Status.LastKnownGood.Spec
	}
	sel := labels.SelectorFromSet(labels.Set{node.LabelControlPlane: ""})
	nodes, err := c.nodes.List(sel)
	if err != nil {
		return Observed{}, err
	}
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	pods, err := c.etcdPods.Pods(manifests.Namespace).List(EtcdPods())
	if err != nil {
		return Observed{}, err
	}
	// A member on a node without the label (a join stopped before labelling it) is a
	// member all the same: the quorum counts it.
	for _, p := range pods {
		if p.Spec.NodeName != "" && !slices.Contains(names, p.Spec.NodeName) {
			names = append(names, p.Spec.NodeName)
		}
	}
	// A target that names no etcd version (a spec made before etcd versions, or its
	// last-known-good) leaves the members' images alone: comparing them with an image
	// made from today's defaults or a changed imageRepository would restart every
	// member without a change of the spec.
	image := ""
	if s.Etcd.Version != "" {
		configured := s.Configure(cluster)
		image = configured.Image(config.ImageEtcd)
	}
	o := observeEtcd(names, pods, manifests.EtcdExtraArgsText(s.Etcd.ExtraArgs), image, cp.Status.Etcd)
	if image == "" && len(pods) > 0 {
		o.Status.Image = manifests.EtcdImage(pods[0])
	}
	return o, nil
}

// etcdServers is the --etcd-servers of the apiserver in t ("" for other workloads).
func etcdServers(t corev1.PodTemplateSpec) string {
	for _, c := range t.Spec.Containers {
		if c.Name != manifests.APIServer {
			continue
		}
		for _, arg := range c.Command {
			if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
				return v
			}
		}
	}
	return ""
}

// podTemplate is the pod template of a DaemonSet or Deployment.
func podTemplate(w runtime.Object) corev1.PodTemplateSpec {
	switch o := w.(type) {
	case *appsv1.DaemonSet:
		return o.Spec.Template
	case *appsv1.Deployment:
		return o.Spec.Template
	}
	return corev1.PodTemplateSpec{}
}

// serving asks each node's apiserver, on a new connection (steered like every new
// client's), for the ControlPlane as this controller: an authorized request, which a
// new apiserver answers only once its authorizer is ready. It returns what failed, or "".
func (c *Controller) serving(ctx context.Context, pods []*corev1.Pod) string {
	for _, p := range pods {
		if p.Status.HostIP == "" {
			return "pod " + p.Name + " has no host address yet"
		}
		if err := c.askAt(ctx, p.Status.HostIP); err != nil {
			return fmt.Sprintf("the apiserver on node %s (%s): %v", p.Spec.NodeName, p.Status.HostIP, err)
		}
	}
	return ""
}

func (c *Controller) askAt(ctx context.Context, hostIP string) error {
	cfg := rest.CopyConfig(c.restConfig)
	cfg.Host = "https://" + net.JoinHostPort(hostIP, strconv.Itoa(config.DefaultAPIServerPort))
	cfg.Timeout = 2 * time.Second
	// A Dial of its own gives a transport of its own (client-go shares transports of
	// equal TLS settings): a new connection each time, closed after.
	cfg.Dial = (&net.Dialer{Timeout: cfg.Timeout}).DialContext
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	defer utilnet.CloseIdleConnectionsFor(rt)
	client := &http.Client{Transport: rt, Timeout: cfg.Timeout}
	url := cfg.Host + "/apis/" + controlplane.Group + "/" + controlplane.Version + "/" + controlplane.Resource + "/" + controlplane.Name
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
