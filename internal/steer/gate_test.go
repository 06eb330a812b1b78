package steer

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/selfkube/selfkube/internal/component"
)

var _ interface {
	component.Component
	component.Readier
} = (*Gate)(nil)

// gatedPod is an apiserver pod of node1 with the readiness gate and, if status is not
// empty, ConditionServing in that status.
func gatedPod(name, uid string, status corev1.ConditionStatus) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", UID: types.UID(uid)},
		Spec: corev1.PodSpec{NodeName: "node1",
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: ConditionServing}}},
	}
	if status != "" {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}, {Type: ConditionServing, Status: status}}
	}
	return p
}

func TestGateDecide(t *testing.T) {
	ungated := gatedPod("other", "u", "")
	ungated.Spec.ReadinessGates = nil
	deleting := gatedPod("old", "u", corev1.ConditionTrue)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for _, tc := range []struct {
		name           string
		pod            *corev1.Pod
		serving, known bool
		want           corev1.ConditionStatus // "" : no change
	}{
		{"new pod, its listener ready", gatedPod("p", "u", ""), true, true, corev1.ConditionTrue},
		{"new pod, its listener not ready yet", gatedPod("p", "u", ""), false, true, ""},
		{"new pod, no verdict", gatedPod("p", "u", ""), false, false, ""},
		{"serving, still ready", gatedPod("p", "u", corev1.ConditionTrue), true, true, ""},
		{"serving, its probe fails", gatedPod("p", "u", corev1.ConditionTrue), false, true, corev1.ConditionFalse},
		{"serving, the agent cannot tell (restarted)", gatedPod("p", "u", corev1.ConditionTrue), false, false, ""},
		{"not serving, ready again", gatedPod("p", "u", corev1.ConditionFalse), true, true, corev1.ConditionTrue},
		{"not serving, still failing", gatedPod("p", "u", corev1.ConditionFalse), false, true, ""},
		{"a pod without the gate is never touched", ungated, true, true, ""},
		{"a pod being deleted is left as it is", deleting, false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := GateDecide(tc.pod, tc.serving, tc.known)
			if got := map[bool]corev1.ConditionStatus{true: ch.Status}[ch.Set]; got != tc.want {
				t.Errorf("GateDecide = %+v, want status %q", ch, tc.want)
			}
			if ch.Set && (ch.Reason == "" || ch.Message == "") {
				t.Errorf("a change without reason or message: %+v", ch)
			}
		})
	}
}

// TestGateSetsTheConditionOfTheVerdictsPod runs the Gate against a fake API: the pod
// whose listener the agent found ready gets ConditionServing True, with its UID as the
// patch's precondition and an Event; a pod of another node is never read or written.
func TestGateSetsTheConditionOfTheVerdictsPod(t *testing.T) {
	newPod := gatedPod("kube-apiserver-new", "uid-new", "")
	oldPod := gatedPod("kube-apiserver-old", "uid-old", corev1.ConditionTrue)
	elsewhere := gatedPod("kube-apiserver-elsewhere", "uid-elsewhere", "")
	elsewhere.Spec.NodeName = "node2"
	client := fake.NewClientset(newPod, oldPod, elsewhere)
	events := record.NewFakeRecorder(10)
	g := NewGate(client, "kube-system", "node1", func() record.EventRecorder { return events }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	waitFor(t, "the gate's cache to sync", func() bool { return g.Ready() == nil })

	// The new pod's listener is ready; the old one's failed its probe (shutting down).
	g.Observe(map[types.UID]bool{"uid-new": true, "uid-old": false, "uid-elsewhere": true})
	condition := func(name string) corev1.ConditionStatus {
		p, err := client.CoreV1().Pods("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == ConditionServing {
				return c.Status
			}
		}
		return ""
	}
	waitFor(t, "the new pod to be serving and the old one not", func() bool {
		return condition("kube-apiserver-new") == corev1.ConditionTrue && condition("kube-apiserver-old") == corev1.ConditionFalse
	})
	if got := condition("kube-apiserver-elsewhere"); got != "" {
		t.Errorf("the pod of another node got %s=%s", ConditionServing, got)
	}

	var patches int
	for _, a := range client.Actions() {
		p, ok := a.(clienttesting.PatchAction)
		if !ok {
			continue
		}
		patches++
		if p.GetSubresource() != "status" || p.GetPatchType() != types.StrategicMergePatchType {
			t.Errorf("patch of %s/%s: want a strategic merge patch of status", p.GetName(), p.GetSubresource())
		}
		var body struct {
			Metadata struct{ UID types.UID } `json:"metadata"`
		}
		if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
			t.Fatal(err)
		}
		if want := map[string]types.UID{"kube-apiserver-new": "uid-new", "kube-apiserver-old": "uid-old"}[p.GetName()]; body.Metadata.UID != want {
			t.Errorf("patch of %s carries UID %q, want %q as its precondition", p.GetName(), body.Metadata.UID, want)
		}
	}
	if patches != 2 {
		t.Errorf("%d patches, want 2 (one per pod of this node)", patches)
	}
	for range 2 {
		select {
		case e := <-events.Events:
			t.Logf("event: %s", e)
		case <-time.After(5 * time.Second):
			t.Fatal("no Event for a change of the condition")
		}
	}
}
