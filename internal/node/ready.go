package node

import corev1 "k8s.io/api/core/v1"

// Ready reports whether node n's Ready condition is True. A node without the condition
// (not yet reported by its kubelet) is not Ready.
func Ready(n *corev1.Node) bool {
	if n == nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodReady reports whether pod p's Ready condition is True and p is not being deleted.
//
// A terminating pod does not count, even while its containers still pass their
// readiness probes: it is about to go, so it can neither take over from a temporary
// control plane (init's hand-over), nor prove that a joining node's apiserver runs, nor
// be the pod a checkpoint is taken from (the checkpointer already skips terminating
// pods before it asks). Every caller waits for a pod that stays.
func PodReady(p *corev1.Pod) bool {
	if p == nil || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
