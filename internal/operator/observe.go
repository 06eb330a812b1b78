package operator

import (
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
)

// failingReasons are the reasons a container waits for that more waiting does not mend.
var failingReasons = []string{
	"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
	"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}

// ownedPods are the pods of pods whose controller is one of owners (the DaemonSet, or the
// Deployment's ReplicaSets), not being deleted, by name. A pod that only carries a
// component's labels (anyone who may create pods in kube-system can make one) is not
// the component's and never judges it.
func ownedPods(pods []*corev1.Pod, owners ...types.UID) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || !slices.Contains(owners, ref.UID) || p.DeletionTimestamp != nil {
			continue
		}
		// A pod that ended (a Deployment's pod killed by a reboot of its node stays
		// Failed until garbage-collected) is replaced, not waited for.
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// currentRevision are the pods that run template (its containers' images, commands and
// resources): the new revision during a roll-out, not the old pods on their way out,
// whose failures (the very ones a change may fix) must not judge the change.
func currentRevision(pods []*corev1.Pod, template corev1.PodTemplateSpec) []*corev1.Pod {
	same := func(p *corev1.Pod) bool {
		if len(p.Spec.Containers) != len(template.Spec.Containers) {
			return false
		}
		for i, c := range template.Spec.Containers {
			pc := p.Spec.Containers[i]
			if pc.Image != c.Image || !slices.Equal(pc.Command, c.Command) || !equality.Semantic.DeepEqual(pc.Resources, c.Resources) {
				return false
			}
		}
		return true
	}
	var out []*corev1.Pod
	for _, p := range pods {
		if same(p) {
			out = append(out, p)
		}
	}
	return out
}

// podFailure is the first failure among pods, if any.
func podFailure(pods []*corev1.Pod) *Failure {
	for _, p := range pods {
		for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
			w := cs.State.Waiting
			if w == nil || !slices.Contains(failingReasons, w.Reason) {
				continue
			}
			msg := fmt.Sprintf("pod %s on node %s: container %s", p.Name, p.Spec.NodeName, cs.Name)
			if w.Message != "" {
				msg += ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(" (last exit code %d", t.ExitCode)
				if t.Message != "" {
					msg += ": " + strings.TrimSpace(t.Message)
				}
				msg += ")"
			}
			return &Failure{Reason: w.Reason, Message: msg}
		}
	}
	return nil
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// daemonSetHealth says whether ds has rolled out: its controller saw its generation, and
// each of the pods it should have is updated and Ready with no other left; or what it
// still waits for. A pod on a node in down (by name) that runs the current template is
// not waited for (the caller judges a DaemonSet twice: with the nodes that are down,
// and without).
func daemonSetHealth(ds *appsv1.DaemonSet, pods []*corev1.Pod, down map[string]bool) (controlplane.ComponentStatus, string) {
	s := ds.Status
	st := controlplane.ComponentStatus{Name: ds.Name, Image: image(ds.Spec.Template), ObservedGeneration: s.ObservedGeneration,
		Updated: s.UpdatedNumberScheduled, Ready: s.NumberReady, Desired: s.DesiredNumberScheduled}
	var live []*corev1.Pod
	for _, p := range pods {
		if !down[p.Spec.NodeName] {
			live = append(live, p)
		}
	}
	onDown := int32(len(pods) - len(live))
	switch {
	case s.ObservedGeneration < ds.Generation:
		return st, fmt.Sprintf("the DaemonSet controller has not seen generation %d yet", ds.Generation)
	case s.DesiredNumberScheduled == 0:
		return st, "no node to run on"
	case s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberAvailable+onDown < s.DesiredNumberScheduled || int32(len(pods)) != s.DesiredNumberScheduled:
		return st, fmt.Sprintf("%d of %d pods updated, %d available, %d pods in all", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable, len(pods))
	}
	for _, p := range live {
		if !ready(p) {
			return st, "pod " + p.Name + " is not Ready"
		}
	}
	return st, ""
}

// deploymentHealth is daemonSetHealth for a Deployment.
func deploymentHealth(d *appsv1.Deployment, pods []*corev1.Pod) (controlplane.ComponentStatus, string) {
	s := d.Status
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := controlplane.ComponentStatus{Name: d.Name, Image: image(d.Spec.Template), ObservedGeneration: s.ObservedGeneration,
		Updated: s.UpdatedReplicas, Ready: s.ReadyReplicas, Desired: want}
	switch {
	case s.ObservedGeneration < d.Generation:
		return st, fmt.Sprintf("the Deployment controller has not seen generation %d yet", d.Generation)
	case s.UpdatedReplicas != want || s.AvailableReplicas != want || s.Replicas != want || int32(len(pods)) != want:
		return st, fmt.Sprintf("%d of %d replicas updated, %d available, %d pods in all", s.UpdatedReplicas, want, s.AvailableReplicas, len(pods))
	}
	for _, p := range pods {
		if !ready(p) {
			return st, "pod " + p.Name + " is not Ready"
		}
	}
	return st, ""
}

func image(t corev1.PodTemplateSpec) string {
	if len(t.Spec.Containers) == 0 {
		return ""
	}
	return t.Spec.Containers[0].Image
}

// Member is one control-plane node's etcd member, as its mirror pod shows it.
type Member struct {
	Node string
	// Exists: the node's etcd mirror pod exists (it is missing for a moment while the
	// kubelet restarts the member, and on a node that is still joining).
	Exists bool
	// Matches: it runs the target's extra flags (manifests.AnnotationEtcdExtraArgs).
	Matches bool
	Ready   bool
	// Unchecked, when set, says why a member that is Ready is not counted so: it is being
	// changed and its agent has not reported a passing check of it since.
	Unchecked string
}

// unchecked says why the member changed by m is not done, given its node agent's last
// check c, when its mirror pod became Ready, and how many members there are; "" when
// it is done.
func unchecked(m *controlplane.EtcdMemberChange, c controlplane.EtcdCheck, since time.Time, members int) string {
	// The check must have begun after the pod became Ready (the agent stamps it before it
	// asks, and the status keeps whole seconds): one that began earlier may have been
	// answered by the member's old process.
	switch {
	case c.Generation != m.Generation || c.Target != m.Target || since.IsZero() || !c.Time.Time.After(since):
		return "waiting for its node agent to check it (endpoint health, member list)"
	case !c.Healthy:
		return "its node agent's check fails: " + c.Message
	case int(c.Members) < members:
		return fmt.Sprintf("its member list has %d started, voting members; want %d", c.Members, members)
	}
	return ""
}

// readySince is when p last became Ready.
func readySince(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// observeEtcd judges the etcd members of nodes (the control-plane nodes) from pods (the
// mirror pods of etcd) against the target's extra flags (their canonical text, as in
// manifests.AnnotationEtcdExtraArgs) and image (its version; "" leaves it out). A mirror pod is made by the kubelet of its own
// node from the static pod there: only that node can make it say something else.
//
// The member named in st (the one being changed) is Ready only once its node agent
// reported a passing check of it for that change (endpoint health, every member of
// nodes started and voting in the member list), made after its mirror pod last became
// Ready (the agent and the kubelet share the node's clock).
func observeEtcd(nodes []string, pods []*corev1.Pod, want, image string, st *controlplane.EtcdStatus) Observed {
	o := Observed{Component: controlplane.ComponentEtcd, Matches: len(nodes) > 0, EtcdImage: image}
	o.Status = controlplane.ComponentStatus{Name: controlplane.ComponentEtcd, Image: image, Desired: int32(len(nodes))}
	var current []*corev1.Pod
	for _, n := range slices.Sorted(slices.Values(nodes)) {
		m := Member{Node: n}
		for _, p := range pods {
			if p.Spec.NodeName != n || p.DeletionTimestamp != nil {
				continue
			}
			m.Exists = true
			m.Matches = p.Annotations[manifests.AnnotationEtcdExtraArgs] == want && (image == "" || manifests.EtcdImage(p) == image)
			m.Ready = ready(p) && p.Status.Phase == corev1.PodRunning
			if m.Matches {
				current = append(current, p)
			}
			if m.Ready && m.Matches && st != nil && st.Member != nil && st.Member.Node == n {
				if why := unchecked(st.Member, st.Checks[n], readySince(p), len(nodes)); why != "" {
					m.Ready, m.Unchecked = false, why
				}
			}
		}
		if m.Matches {
			o.Status.Updated++
		}
		if m.Ready {
			o.Status.Ready++
		}
		// A member without a mirror pod says nothing of what it runs: it is waited for
		// (not healthy), never a reason to start a change.
		o.Matches = o.Matches && (m.Matches || !m.Exists)
		if o.Waiting == "" {
			switch {
			case !m.Exists:
				o.Waiting = "the etcd member of node " + n + " has no mirror pod (yet)"
			case m.Unchecked != "":
				o.Waiting = "the etcd member of node " + n + ": " + m.Unchecked
			case !m.Ready:
				o.Waiting = "the etcd member of node " + n + " is not Ready"
			}
		}
		o.Members = append(o.Members, m)
	}
	if len(nodes) == 0 {
		o.Waiting = "no control-plane node"
	}
	o.Failure = podFailure(current)
	o.Healthy = o.Waiting == ""
	return o
}
