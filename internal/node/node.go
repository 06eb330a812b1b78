// Package node holds what selfkube's commands do to a Node and its pods: mark it a
// control-plane node, cordon it, tell whether a node or a pod is Ready, and wait for a
// condition with an error that says what never became true.
//
// It sits on the lowest floor (it imports only apply, for the field manager): manifests,
// initcluster, join and the checkpointer import it, never the other way round.
package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/selfkube/selfkube/internal/apply"
)

const (
	// LabelControlPlane is the node-role label control-plane nodes carry (value ""). The
	// self-hosted control plane's DaemonSets and Deployments select it.
	LabelControlPlane = "node-role.kubernetes.io/control-plane"
	// TaintControlPlane is the key of the taint that keeps ordinary workloads off
	// control-plane nodes; the control plane's own pods tolerate it.
	TaintControlPlane = LabelControlPlane
)

// ControlPlaneTaint is the taint a control-plane node gets when its configuration names
// no taints.
func ControlPlaneTaint() corev1.Taint {
	return corev1.Taint{Key: TaintControlPlane, Effect: corev1.TaintEffectNoSchedule}
}

// markInterval is how often MarkControlPlane looks for the node to register (a variable
// for the tests).
var markInterval = 250 * time.Millisecond

// MarkControlPlane waits up to timeout for node name to register, then labels it
// LabelControlPlane and adds taints (nil: ControlPlaneTaint; empty: none). Other labels
// and taints are kept; a taint counts as present when one with its key and effect is.
// It converges: a node that has the label and every taint is not written. An update
// that conflicts is retried on a fresh read; any other error (the node not registered
// yet, above all) is retried until timeout, and the error then names the node and the
// last error.
func MarkControlPlane(ctx context.Context, client kubernetes.Interface, name string, taints []corev1.Taint, timeout time.Duration) error {
	if taints == nil {
		taints = []corev1.Taint{ControlPlaneTaint()}
	}
	what := "marking node " + name + " a control-plane node (waiting for it to register)"
	return Poll(ctx, markInterval, timeout, what, func(ctx context.Context) (bool, error) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !markControlPlane(n, taints) {
				return nil
			}
			_, err = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{FieldManager: apply.FieldManager})
			return err
		})
		return err == nil, err
	})
}

// markControlPlane adds the control-plane label and taints to n, and reports whether it
// changed anything.
func markControlPlane(n *corev1.Node, taints []corev1.Taint) bool {
	changed := false
	if _, ok := n.Labels[LabelControlPlane]; !ok {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[LabelControlPlane] = ""
		changed = true
	}
	for _, t := range taints {
		if !slices.ContainsFunc(n.Spec.Taints, func(x corev1.Taint) bool { return x.MatchTaint(&t) }) {
			n.Spec.Taints = append(n.Spec.Taints, t)
			changed = true
		}
	}
	return changed
}

// Cordon marks the node unschedulable (on) or schedulable again: `kubectl cordon` and
// `uncordon`.
func Cordon(ctx context.Context, client kubernetes.Interface, name string, on bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	_, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
