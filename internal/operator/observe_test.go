package operator

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
)

func pod(name string, owner types.UID, ready bool, waiting string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system",
		Labels: map[string]string{"app.kubernetes.io/name": "kube-apiserver"}},
		Spec: corev1.PodSpec{NodeName: "node1"}}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-apiserver", UID: owner, Controller: ptr.To(true)}}
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	cs := corev1.ContainerStatus{Name: "kube-apiserver", RestartCount: 2}
	if waiting != "" {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waiting, Message: "back-off 20s restarting failed container"}
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	return p
}

// A pod that only wears the component's labels (anyone allowed to create pods in
// kube-system can make one) neither fails the component nor counts for it.
func TestOnlyOwnedPodsJudgeAComponent(t *testing.T) {
	const ds types.UID = "ds-uid"
	impostor := pod("kube-apiserver-fake", "", false, "CrashLoopBackOff")
	claimed := pod("kube-apiserver-claims", "other-uid", false, "CrashLoopBackOff")
	real := pod("kube-apiserver-abcde", ds, true, "")
	owned := ownedPods([]*corev1.Pod{impostor, claimed, real}, ds)
	if len(owned) != 1 || owned[0].Name != real.Name {
		t.Fatalf("owned = %v, want only %s", owned, real.Name)
	}
	if f := podFailure(owned); f != nil {
		t.Errorf("a healthy component failed on someone else's pod: %+v", f)
	}
}

func TestPodFailureSaysWhatAndWhere(t *testing.T) {
	for _, reason := range []string{"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"} {
		f := podFailure([]*corev1.Pod{pod("kube-apiserver-ok", "u", true, ""), pod("kube-apiserver-new", "u", false, reason)})
		if f == nil || f.Reason != reason || !strings.Contains(f.Message, "kube-apiserver-new on node node1") || !strings.Contains(f.Message, "exit code 1") {
			t.Errorf("%s: %+v", reason, f)
		}
	}
	// Starting, or pulling, is waiting, not failing.
	for _, reason := range []string{"ContainerCreating", "PodInitializing"} {
		if f := podFailure([]*corev1.Pod{pod("p", "u", false, reason)}); f != nil {
			t.Errorf("%s counted as a failure: %+v", reason, f)
		}
	}
}

func onNode(p *corev1.Pod, node string) *corev1.Pod {
	p.Spec.NodeName = node
	return p
}

func TestDaemonSetHealth(t *testing.T) {
	ds := func(gen, observed int64, desired, updated, available int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver", Generation: gen},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: observed, DesiredNumberScheduled: desired,
				UpdatedNumberScheduled: updated, NumberAvailable: available, NumberReady: available}}
	}
	one := []*corev1.Pod{pod("a", "u", true, "")}
	for name, tc := range map[string]struct {
		ds      *appsv1.DaemonSet
		pods    []*corev1.Pod
		healthy bool
	}{
		"rolled out":                     {ds(3, 3, 1, 1, 1), one, true},
		"its controller has not seen it": {ds(3, 2, 1, 1, 1), one, false},
		"the old pod is still there":     {ds(3, 3, 1, 1, 1), append(one, pod("b", "u", true, "")), false},
		"the new pod is not updated":     {ds(3, 3, 1, 0, 1), one, false},
		"the pod is not Ready":           {ds(3, 3, 1, 1, 1), []*corev1.Pod{pod("a", "u", false, "")}, false},
		"no node to run on":              {ds(3, 3, 0, 0, 0), nil, false},
		// A worker powered off: its updated pod is not available, and not waited for.
		"a node down, its pod updated":     {ds(3, 3, 2, 2, 1), []*corev1.Pod{pod("a", "u", true, ""), onNode(pod("b", "u", false, ""), "down")}, true},
		"a node down, its pod not updated": {ds(3, 3, 2, 1, 1), []*corev1.Pod{pod("a", "u", true, ""), onNode(pod("b", "u", false, ""), "down")}, false},
		"a node up, its pod not available": {ds(3, 3, 2, 2, 1), []*corev1.Pod{pod("a", "u", true, ""), onNode(pod("b", "u", false, ""), "node2")}, false},
	} {
		_, waiting := daemonSetHealth(tc.ds, tc.pods, map[string]bool{"down": true})
		if (waiting == "") != tc.healthy {
			t.Errorf("%s: waiting %q, want healthy %v", name, waiting, tc.healthy)
		}
	}
}

// An old pod crash-looping on its way out (the failure a change may fix) does not fail
// the new revision; a new pod crash-looping does.
func TestOnlyTheCurrentRevisionFails(t *testing.T) {
	template := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "k:new", Command: []string{"kube-apiserver", "--v=2"}}}}}
	old := pod("kube-apiserver-old", "u", false, "CrashLoopBackOff")
	old.Spec.Containers = []corev1.Container{{Name: "kube-apiserver", Image: "k:old", Command: []string{"kube-apiserver"}}}
	fresh := pod("kube-apiserver-new", "u", false, "")
	fresh.Spec.Containers = template.Spec.Containers
	if f := podFailure(currentRevision([]*corev1.Pod{old, fresh}, template)); f != nil {
		t.Errorf("the old revision's crash loop failed the new one: %+v", f)
	}
	crashing := pod("kube-apiserver-new", "u", false, "CrashLoopBackOff")
	crashing.Spec.Containers = template.Spec.Containers
	if f := podFailure(currentRevision([]*corev1.Pod{old, crashing}, template)); f == nil || !strings.Contains(f.Message, "kube-apiserver-new") {
		t.Errorf("the new revision's crash loop: %+v", f)
	}
}

// The resource's component names are etcd's and the workloads' names, in skew order:
// the control plane, then the add-ons that are its clients.
func TestComponentNamesAreTheWorkloads(t *testing.T) {
	want := []string{manifests.APIServer, manifests.ControllerManager, manifests.Scheduler, manifests.ProxyName, "coredns", "selfkube-network"}
	if !slices.Equal(controlplane.Workloads, want) {
		t.Errorf("controlplane.Workloads = %v, want %v", controlplane.Workloads, want)
	}
	if all := append([]string{"etcd"}, want...); !slices.Equal(controlplane.Components, all) {
		t.Errorf("controlplane.Components = %v, want %v", controlplane.Components, all)
	}
	cfg := &config.Config{}
	config.Default(cfg, config.Host{Hostname: "node1", DefaultAddress: "10.0.0.1"})
	workloads, err := manifests.Workloads(cfg.Cluster, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range want {
		if !ComponentPods().Matches(labels.Set{manifests.LabelName: c}) {
			t.Errorf("ComponentPods does not select %s", c)
		}
		w, ok := workloads[c]
		if !ok {
			t.Errorf("manifests.Workloads has no %s", c)
			continue
		}
		// The informers see the workload, its ReplicaSets and its pods by that label.
		m := w.(metav1.Object)
		tmpl := map[string]string{}
		switch o := w.(type) {
		case *appsv1.DaemonSet:
			tmpl = o.Spec.Template.Labels
		case *appsv1.Deployment:
			tmpl = o.Spec.Template.Labels
		}
		if m.GetName() != c || m.GetLabels()[manifests.LabelName] != c || tmpl[manifests.LabelName] != c {
			t.Errorf("the %s workload is named %s, labelled %q, its pods %q", c, m.GetName(), m.GetLabels()[manifests.LabelName], tmpl[manifests.LabelName])
		}
	}
	for _, other := range []string{"selfkube-checkpointer", "selfkube-controller", "selfkube-apiserver-steer", "etcd"} {
		if ComponentPods().Matches(labels.Set{manifests.LabelName: other}) {
			t.Errorf("ComponentPods selects %s", other)
		}
	}
	cfg.Cluster.Networking.Plugin = config.NetworkPluginNone
	if workloads, _ := manifests.Workloads(cfg.Cluster, nil); workloads["selfkube-network"] != nil {
		t.Errorf("a cluster without selfkube's network plugin has its DaemonSet among the workloads")
	}
}

func etcdMirror(node, extra string, ready bool, waiting string) *corev1.Pod {
	p := pod("etcd-"+node, "", ready, waiting)
	p.Spec.NodeName = node
	p.Spec.Containers = []corev1.Container{{Name: "etcd", Image: "etcd:x"}}
	p.Status.Phase = corev1.PodRunning
	p.Annotations = map[string]string{manifests.AnnotationEtcdExtraArgs: extra}
	return p
}

// etcd's members are judged by their mirror pods: one per control-plane node, its extra
// flags against the target's; a node whose mirror pod is missing (restarting, joining)
// is waited for but is no reason to change anything.
func TestEtcdMembersAreJudgedByTheirMirrorPods(t *testing.T) {
	nodes := []string{"b", "a", "c"}
	o := observeEtcd(nodes, []*corev1.Pod{etcdMirror("a", "{}", true, ""), etcdMirror("b", "{}", true, ""), etcdMirror("c", "{}", true, "")}, "{}", "etcd:x", nil)
	if !o.Matches || !o.Healthy || o.Failure != nil || o.Status.Ready != 3 || o.Status.Updated != 3 || o.Status.Desired != 3 {
		t.Errorf("three matching Ready members: %+v", o)
	}
	if names := []string{o.Members[0].Node, o.Members[1].Node, o.Members[2].Node}; !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("members in order %v, want a b c", names)
	}
	o = observeEtcd(nodes, []*corev1.Pod{etcdMirror("a", "{}", true, ""), etcdMirror("c", "{}", true, "")}, "{}", "etcd:x", nil)
	if !o.Matches || o.Healthy || !strings.Contains(o.Waiting, "node b") {
		t.Errorf("b without a mirror pod: %+v; want it waited for, nothing to change", o)
	}
	o = observeEtcd(nodes, []*corev1.Pod{etcdMirror("a", `{"v":"1"}`, false, "CrashLoopBackOff"), etcdMirror("b", "{}", true, ""), etcdMirror("c", "{}", true, "")},
		`{"v":"1"}`, "etcd:x", nil)
	if o.Matches || o.Failure == nil || o.Failure.Reason != "CrashLoopBackOff" || o.Status.Updated != 1 {
		t.Errorf("a crash-looping on the target's flags: %+v; want its failure, b and c still to change", o)
	}
	o = observeEtcd(nodes, []*corev1.Pod{etcdMirror("a", `{}`, false, "CrashLoopBackOff"), etcdMirror("b", "{}", true, ""), etcdMirror("c", "{}", true, "")},
		`{"v":"1"}`, "etcd:x", nil)
	if o.Failure != nil {
		t.Errorf("a crash loop on flags other than the target's judged the target: %+v", o.Failure)
	}
}

// The member being changed is done only once its node agent reported a passing check
// (endpoint health, every member started and voting) made for this change after its
// mirror pod became Ready: a check of the old process, before the kubelet restarted it,
// does not count.
func TestTheChangedMemberCountsOnlyWithItsAgentsCheck(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	readyAt := metav1.NewTime(time.Date(2026, 12, 6, 3, 0, 10, 0, time.UTC))
	pods := func() []*corev1.Pod {
		a := etcdMirror("a", `{"v":"1"}`, true, "")
		a.Status.Conditions[0].LastTransitionTime = readyAt
		return []*corev1.Pod{a, etcdMirror("b", "{}", true, ""), etcdMirror("c", "{}", true, "")}
	}
	named := &controlplane.EtcdMemberChange{Node: "a", Generation: 2, Target: controlplane.TargetSpec, ExtraArgs: map[string]string{"v": "1"}}
	check := func(gen int64, healthy bool, members int32, at time.Time) map[string]controlplane.EtcdCheck {
		return map[string]controlplane.EtcdCheck{"a": {Generation: gen, Target: controlplane.TargetSpec, Healthy: healthy, Members: members,
			Message: "etcd member c0ffee has not started", Time: metav1.NewTime(at)}}
	}
	for name, tc := range map[string]struct {
		checks map[string]controlplane.EtcdCheck
		ready  bool
		want   string
	}{
		"no check yet":                      {nil, false, "waiting for its node agent"},
		"a check before it became Ready":    {check(2, true, 3, readyAt.Add(-time.Second)), false, "waiting for its node agent"},
		"a check in the same second":        {check(2, true, 3, readyAt.Time), false, "waiting for its node agent"},
		"a check of an earlier change":      {check(1, true, 3, readyAt.Add(time.Second)), false, "waiting for its node agent"},
		"a failing check":                   {check(2, false, 0, readyAt.Add(time.Second)), false, "has not started"},
		"a member missing from the list":    {check(2, true, 2, readyAt.Add(time.Second)), false, "2 started, voting members; want 3"},
		"a passing check after it is Ready": {check(2, true, 3, readyAt.Add(time.Second)), true, ""},
		// A member of a node deleted without leaving etcd counts too: more is no reason to wait.
		"a member list longer than the nodes": {check(2, true, 4, readyAt.Add(time.Second)), true, ""},
	} {
		st := &controlplane.EtcdStatus{Member: named, Checks: tc.checks}
		o := observeEtcd(nodes, pods(), `{"v":"1"}`, "etcd:x", st)
		if o.Members[0].Ready != tc.ready || !strings.Contains(o.Waiting, tc.want) || o.Healthy != (tc.want == "") {
			t.Errorf("%s: member a Ready=%v, waiting %q; want Ready=%v, waiting for %q", name, o.Members[0].Ready, o.Waiting, tc.ready, tc.want)
		}
	}
	// Members not being changed are judged by their mirror pods alone.
	if o := observeEtcd(nodes, pods(), `{"v":"1"}`, "etcd:x", &controlplane.EtcdStatus{Member: named, Checks: check(2, true, 3, readyAt.Add(time.Second))}); !o.Members[1].Ready || !o.Members[2].Ready {
		t.Errorf("b and c: %+v", o.Members)
	}
}

// A pod that ended (Failed after its node rebooted) is no pod of the component: it
// neither fails it nor keeps it from being healthy.
func TestEndedPodsAreNotTheComponents(t *testing.T) {
	const rs types.UID = "rs-uid"
	live := pod("kube-scheduler-a", rs, true, "")
	ended := pod("kube-scheduler-b", rs, false, "")
	ended.Status.Phase = corev1.PodFailed
	got := ownedPods([]*corev1.Pod{live, ended}, rs)
	if len(got) != 1 || got[0].Name != "kube-scheduler-a" {
		t.Errorf("owned pods %v, want the live one only", got)
	}
}

// An etcd version change is a change of the members' image: a member on another image
// is not the target's, whatever its flags; one on the target's image is.
func TestEtcdMembersOnAnotherVersionAreToChange(t *testing.T) {
	old := etcdMirror("b", "{}", true, "")
	old.Spec.Containers[0].Image = "registry.local/etcd:3.6.6-0"
	o := observeEtcd([]string{"a", "b"}, []*corev1.Pod{etcdMirror("a", "{}", true, ""), old}, "{}", "etcd:x", nil)
	if o.Matches || o.Status.Updated != 1 || o.Members[1].Matches || !o.Members[0].Matches {
		t.Errorf("b on the old image: %+v; want a updated, b to change", o)
	}
}

// A target that names no etcd version (a spec made before etcd versions) leaves the
// members' images alone: members on any image match, and a change names no image.
func TestEtcdMembersOfASpecWithoutAVersion(t *testing.T) {
	other := etcdMirror("b", "{}", true, "")
	other.Spec.Containers[0].Image = "registry.local/etcd:3.6.6-0"
	o := observeEtcd([]string{"a", "b"}, []*corev1.Pod{etcdMirror("a", "{}", true, ""), other}, "{}", "", nil)
	if !o.Matches || !o.Healthy || o.Status.Updated != 2 || o.EtcdImage != "" {
		t.Errorf("members on their own images, no version in the target: %+v; want both matching", o)
	}
}
