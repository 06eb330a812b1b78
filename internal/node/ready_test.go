package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReady(t *testing.T) {
	cond := func(typ corev1.NodeConditionType, s corev1.ConditionStatus) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: s}
	}
	for _, tc := range []struct {
		name  string
		node  *corev1.Node
		ready bool
	}{
		{"nil", nil, false},
		{"no conditions", &corev1.Node{}, false},
		{"ready true", &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue)}}}, true},
		{"ready false", &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionFalse)}}}, false},
		{"ready unknown", &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionUnknown)}}}, false},
		{"other condition true only", &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionTrue)}}}, false},
		{"ready true after others", &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse), cond(corev1.NodeReady, corev1.ConditionTrue)}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Ready(tc.node); got != tc.ready {
				t.Errorf("Ready = %v, want %v", got, tc.ready)
			}
		})
	}
}

func TestPodReady(t *testing.T) {
	pod := func(deleting bool, conds ...corev1.PodCondition) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Conditions: conds}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	cond := func(typ corev1.PodConditionType, s corev1.ConditionStatus) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: s}
	}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		ready bool
	}{
		{"nil", nil, false},
		{"no conditions", pod(false), false},
		{"ready true", pod(false, cond(corev1.PodReady, corev1.ConditionTrue)), true},
		{"ready false", pod(false, cond(corev1.PodReady, corev1.ConditionFalse)), false},
		{"ready unknown", pod(false, cond(corev1.PodReady, corev1.ConditionUnknown)), false},
		{"containers ready but not the pod", pod(false, cond(corev1.ContainersReady, corev1.ConditionTrue),
			cond(corev1.PodReady, corev1.ConditionFalse)), false},
		{"ready true after others", pod(false, cond(corev1.PodScheduled, corev1.ConditionTrue),
			cond(corev1.PodReady, corev1.ConditionTrue)), true},
		// The one difference from a plain condition check: a terminating pod does not count.
		{"terminating but ready", pod(true, cond(corev1.PodReady, corev1.ConditionTrue)), false},
		{"terminating not ready", pod(true, cond(corev1.PodReady, corev1.ConditionFalse)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodReady(tc.pod); got != tc.ready {
				t.Errorf("PodReady = %v, want %v", got, tc.ready)
			}
		})
	}
}
