package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/selfkube/selfkube/internal/apply"
)

var otherTaint = corev1.Taint{Key: "example.com/gpu", Value: "yes", Effect: corev1.TaintEffectNoExecute}

func existing(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "zone": "a"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{otherTaint}},
	}
}

func updates(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == "nodes" {
			n++
		}
	}
	return n
}

func getNode(t *testing.T, c *fake.Clientset, name string) *corev1.Node {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMarkControlPlaneDefaultTaintKeepsOthers(t *testing.T) {
	c := fake.NewClientset(existing("cp1"))
	if err := MarkControlPlane(context.Background(), c, "cp1", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	n := getNode(t, c, "cp1")
	if v, ok := n.Labels[LabelControlPlane]; !ok || v != "" {
		t.Errorf("labels = %v, want %s=\"\"", n.Labels, LabelControlPlane)
	}
	if n.Labels["zone"] != "a" || n.Labels["kubernetes.io/hostname"] != "cp1" {
		t.Errorf("labels = %v, lost the node's other labels", n.Labels)
	}
	want := []corev1.Taint{otherTaint, ControlPlaneTaint()}
	if len(n.Spec.Taints) != 2 || !n.Spec.Taints[0].MatchTaint(&want[0]) || n.Spec.Taints[0].Value != "yes" ||
		!n.Spec.Taints[1].MatchTaint(&want[1]) {
		t.Errorf("taints = %+v, want %+v", n.Spec.Taints, want)
	}
	if updates(c) != 1 {
		t.Errorf("%d updates, want 1", updates(c))
	}
}

func TestMarkControlPlaneIdempotent(t *testing.T) {
	c := fake.NewClientset(existing("cp1"))
	taints := []corev1.Taint{ControlPlaneTaint(), {Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectPreferNoSchedule}}
	for i := range 3 {
		if err := MarkControlPlane(context.Background(), c, "cp1", taints, 5*time.Second); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if updates(c) != 1 {
		t.Errorf("%d updates over 3 runs, want 1: a marked node must be left alone", updates(c))
	}
	if n := getNode(t, c, "cp1"); len(n.Spec.Taints) != 3 {
		t.Errorf("taints = %+v, want the other taint and the two asked for, once each", n.Spec.Taints)
	}
}

func TestMarkControlPlaneTaintPresentWithOtherValue(t *testing.T) {
	n := existing("cp1")
	n.Labels[LabelControlPlane] = ""
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: TaintControlPlane, Value: "custom", Effect: corev1.TaintEffectNoSchedule})
	c := fake.NewClientset(n)
	if err := MarkControlPlane(context.Background(), c, "cp1", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if updates(c) != 0 {
		t.Errorf("%d updates, want none: the taint's key and effect are there", updates(c))
	}
}

func TestMarkControlPlaneNoTaints(t *testing.T) {
	n := existing("w1")
	n.Labels = nil
	n.Spec.Taints = nil
	c := fake.NewClientset(n)
	if err := MarkControlPlane(context.Background(), c, "w1", []corev1.Taint{}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got := getNode(t, c, "w1")
	if _, ok := got.Labels[LabelControlPlane]; !ok || len(got.Spec.Taints) != 0 {
		t.Errorf("labels %v taints %+v, want the label and no taint", got.Labels, got.Spec.Taints)
	}
}

func TestMarkControlPlaneRetriesConflict(t *testing.T) {
	// A conflict is retried at once on a fresh read, not at the next look for the node:
	// with that look a minute away, only the immediate retry finishes within the timeout.
	defer func(i time.Duration) { markInterval = i }(markInterval)
	markInterval = time.Minute
	c := fake.NewClientset(existing("cp1"))
	conflicts := 2
	c.PrependReactor("update", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if u, ok := a.(k8stesting.UpdateAction); ok && u.GetObject().(*corev1.Node).Labels[LabelControlPlane] != "" {
			t.Errorf("update with label value %q", u.GetObject().(*corev1.Node).Labels[LabelControlPlane])
		}
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "cp1", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	if err := MarkControlPlane(context.Background(), c, "cp1", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if updates(c) != 3 {
		t.Errorf("%d updates, want 3 (two conflicts, then success)", updates(c))
	}
	gets := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "get" {
			gets++
		}
	}
	if gets < 3 {
		t.Errorf("%d gets, want a fresh read before each of the 3 updates", gets)
	}
	if n := getNode(t, c, "cp1"); len(n.Spec.Taints) != 2 {
		t.Errorf("taints = %+v", n.Spec.Taints)
	}
}

func TestMarkControlPlaneWaitsForRegistration(t *testing.T) {
	c := fake.NewClientset()
	go func() {
		time.Sleep(3 * markInterval / 2)
		if _, err := c.CoreV1().Nodes().Create(context.Background(), existing("late"), metav1.CreateOptions{}); err != nil {
			t.Error(err)
		}
	}()
	if err := MarkControlPlane(context.Background(), c, "late", nil, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := getNode(t, c, "late").Labels[LabelControlPlane]; !ok {
		t.Error("the node that registered late was not labelled")
	}
}

func TestMarkControlPlaneNodeNeverRegisters(t *testing.T) {
	c := fake.NewClientset(existing("other"))
	err := MarkControlPlane(context.Background(), c, "ghost", nil, 600*time.Millisecond)
	if err == nil {
		t.Fatal("MarkControlPlane = nil for a node that does not exist")
	}
	msg := err.Error()
	for _, want := range []string{"node ghost", "register", "gave up after 600ms", `nodes "ghost" not found`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if !apierrors.IsNotFound(err) {
		t.Errorf("error %v does not wrap the NotFound", err)
	}
	if updates(c) != 0 {
		t.Errorf("%d updates, want none", updates(c))
	}
}

func TestMarkControlPlaneFieldManager(t *testing.T) {
	// The update carries selfkube's field manager, so managedFields name selfkube.
	c := fake.NewClientset(existing("cp1"))
	var manager string
	c.PrependReactor("update", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if u, ok := a.(k8stesting.UpdateActionImpl); ok {
			manager = u.GetUpdateOptions().FieldManager
		}
		return false, nil, nil
	})
	if err := MarkControlPlane(context.Background(), c, "cp1", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if manager != apply.FieldManager {
		t.Errorf("field manager %q, want %q", manager, apply.FieldManager)
	}
}
