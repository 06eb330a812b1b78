package recovery

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/checkpoint/agent"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
)

// A restore or a forced new cluster leaves etcd with one member, this node's: every other
// control-plane node is lost to the cluster until it joins again. The data still shows
// the pods that ran there as Ready, and nothing corrects that without a controller
// manager: the controller manager's and scheduler's Deployments look complete while
// their replicas ran on lost nodes, and this node, which has no checkpoint of a
// component it never ran, runs none. standIns fixes that:
//   - it cordons the lost nodes, so nothing is scheduled onto them;
//   - it deletes the lost nodes' pods of the control-plane Deployments at once (no
//     kubelet there confirms a graceful deletion), so their ReplicaSets replace them;
//   - for each checkpointed Deployment (controller manager, scheduler) with no pod on
//     this node and none Ready on a live node, it writes a checkpoint built from the
//     Deployment and its Secret and activates it: a stand-in that runs until the
//     Deployment's own pod is Ready here and the checkpointer retires it (see package
//     checkpoint: an active checkpoint of a component Ready nowhere else is kept).

// lostNodes are the control-plane nodes other than self: after a restore or a forced new
// cluster none of them is an etcd member any more.
func lostNodes(cpNodes []corev1.Node, self string) []string {
	var out []string
	for _, n := range cpNodes {
		if n.Name != self {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// stalePods are the pods of selfkube's control-plane Deployments (kube-system pods
// controlled by a ReplicaSet) bound to a lost node.
func stalePods(pods []corev1.Pod, lost []string) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range pods {
		p := &pods[i]
		ref := metav1.GetControllerOf(p)
		if p.Namespace != manifests.Namespace || ref == nil || ref.Kind != "ReplicaSet" || !slices.Contains(lost, p.Spec.NodeName) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// needsStandIn says whether this node must stand in for the checkpointed Deployment dep:
// no pod of it (pods: those it selects, the stale ones already gone) is bound to self,
// and none is Ready on a node that is not lost. Deployments whose pods take no
// checkpoint are never stood in for.
func needsStandIn(dep *appsv1.Deployment, pods []corev1.Pod, self string, lost []string) bool {
	if checkpoint.ValidName(dep.Spec.Template.Annotations[checkpoint.AnnotationCheckpoint]) != nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || sel.Empty() {
		return false
	}
	for i := range pods {
		p := &pods[i]
		if p.Namespace != dep.Namespace || p.DeletionTimestamp != nil || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if p.Spec.NodeName == self {
			return false // the kubelet here runs it, or the checkpointer stands in for it
		}
		if p.Spec.NodeName != "" && !slices.Contains(lost, p.Spec.NodeName) && node.PodReady(p) {
			return false
		}
	}
	return true
}

// standInPod is the pod a stand-in for dep on node nodeName (address hostIP) is built
// from: the Deployment's pod template, as if its ReplicaSet had made a pod and the
// scheduler bound it here.
func standInPod(dep *appsv1.Deployment, nodeName, hostIP string) *corev1.Pod {
	t := dep.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name, Namespace: dep.Namespace, Labels: t.Labels, Annotations: t.Annotations},
		Spec:       t.Spec,
		Status:     corev1.PodStatus{HostIP: hostIP},
	}
	pod.Spec.NodeName = nodeName
	return pod
}

// nodeAddress is the node's internal address (else its first).
func nodeAddress(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	if len(n.Status.Addresses) > 0 {
		return n.Status.Addresses[0].Address
	}
	return ""
}

// standIns is the phase: see the comment at the top of this file.
func standIns(ctx context.Context, d *Data) error {
	api, err := d.client()
	if err != nil {
		return err
	}
	cs := api.cs
	cpNodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: node.LabelControlPlane})
	if err != nil {
		return fmt.Errorf("listing the control-plane nodes: %w", err)
	}
	lost := lostNodes(cpNodes.Items, d.NodeName)
	var did []string
	for _, n := range cpNodes.Items {
		if !slices.Contains(lost, n.Name) || n.Spec.Unschedulable {
			continue
		}
		if err := node.Cordon(ctx, cs, n.Name, true); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cordoning the lost node %s: %w", n.Name, err)
		}
		did = append(did, "cordoned "+n.Name)
	}
	pods, err := cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var deleted []string
	for _, p := range stalePods(pods.Items, lost) {
		err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the pod %s of the lost node %s: %w", p.Name, p.Spec.NodeName, err)
		}
		deleted = append(deleted, p.Name)
	}
	if len(deleted) > 0 {
		did = append(did, "deleted the lost nodes' pods "+strings.Join(deleted, ", "))
		if pods, err = cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{}); err != nil {
			return err
		}
	}

	self, err := cs.CoreV1().Nodes().Get(ctx, d.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading this node %s: %w", d.NodeName, err)
	}
	deps, err := cs.AppsV1().Deployments(manifests.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	store := checkpoint.Store{Dir: d.Layout.CheckpointsDir(), ManifestsDir: d.Layout.ManifestsDir()}
	for i := range deps.Items {
		dep := &deps.Items[i]
		if !needsStandIn(dep, pods.Items, d.NodeName, lost) {
			continue
		}
		name := dep.Spec.Template.Annotations[checkpoint.AnnotationCheckpoint]
		// The static pod's volumes point where the kubelet finds the checkpoint on the
		// host, whatever root this process sees the host under.
		hostDir := path.Join(checkpoint.CheckpointsDir, name)
		if _, err := agent.Write(ctx, cs, store, name, hostDir, standInPod(dep, d.NodeName, nodeAddress(self))); err != nil {
			return fmt.Errorf("building a stand-in for %s from its Deployment: %w", dep.Name, err)
		}
		if err := store.Activate(name); err != nil {
			return err
		}
		did = append(did, fmt.Sprintf("activated a stand-in for %s built from its Deployment (no replica runs on a live node)", dep.Name))
	}
	if len(did) == 0 {
		d.Status.Infof("nothing ran on another control-plane node that this node needs")
		return nil
	}
	for _, s := range did {
		d.Status.Infof("%s", s)
	}
	return nil
}
