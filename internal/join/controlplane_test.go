package join

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func TestSpread(t *testing.T) {
	const ns, name = "kube-system", "kube-scheduler"
	const annotation = "selfkube.io/spread-at"
	dep := func(replicas *int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"component": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"component": name}}},
			},
		}
	}
	pod := func(podName, component, node string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns, Labels: map[string]string{"component": component}},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Phase: phase},
		}
	}
	running := corev1.PodRunning
	tests := []struct {
		name      string
		objs      []runtime.Object
		patchErr  error
		wantPatch bool
		wantErr   string
	}{
		{
			name:      "two replicas on one node",
			objs:      []runtime.Object{dep(ptr.To[int32](2)), pod("s1", name, "node-a", running), pod("s2", name, "node-a", running)},
			wantPatch: true,
		},
		{
			name:      "one running, one pending elsewhere",
			objs:      []runtime.Object{dep(ptr.To[int32](2)), pod("s1", name, "node-a", running), pod("s2", name, "node-b", corev1.PodPending)},
			wantPatch: true,
		},
		{
			name:      "another component's pod elsewhere does not count",
			objs:      []runtime.Object{dep(ptr.To[int32](2)), pod("s1", name, "node-a", running), pod("s2", name, "node-a", running), pod("c1", "kube-controller-manager", "node-b", running)},
			wantPatch: true,
		},
		{
			name: "two nodes",
			objs: []runtime.Object{dep(ptr.To[int32](2)), pod("s1", name, "node-a", running), pod("s2", name, "node-b", running)},
		},
		{
			name: "one replica",
			objs: []runtime.Object{dep(ptr.To[int32](1)), pod("s1", name, "node-a", running)},
		},
		{
			name: "replicas unset",
			objs: []runtime.Object{dep(nil), pod("s1", name, "node-a", running)},
		},
		{
			name: "no running pod",
			objs: []runtime.Object{dep(ptr.To[int32](2)), pod("s1", name, "", corev1.PodPending)},
		},
		{
			name:    "no deployment",
			wantErr: "not found",
		},
		{
			name:     "patch refused",
			objs:     []runtime.Object{dep(ptr.To[int32](2)), pod("s1", name, "node-a", running), pod("s2", name, "node-a", running)},
			patchErr: errors.New("conflict"),
			wantErr:  "restarting kube-scheduler to spread it over the control-plane nodes: conflict",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(tt.objs...)
			if tt.patchErr != nil {
				client.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.patchErr
				})
			}
			before := time.Now().UTC().Truncate(time.Second)
			err := spread(context.Background(), client, name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var patches []k8stesting.PatchAction
			for _, a := range client.Actions() {
				if p, ok := a.(k8stesting.PatchAction); ok && a.Matches("patch", "deployments") {
					patches = append(patches, p)
				}
			}
			if !tt.wantPatch {
				if len(patches) != 0 {
					t.Errorf("patched: %s", patches[0].GetPatch())
				}
				return
			}
			if len(patches) != 1 {
				t.Fatalf("%d patches, want 1", len(patches))
			}
			p := patches[0]
			if p.GetName() != name || p.GetNamespace() != ns || p.GetPatchType() != types.StrategicMergePatchType {
				t.Errorf("patch of %s/%s, type %s; want %s/%s, strategic merge", p.GetNamespace(), p.GetName(), p.GetPatchType(), ns, name)
			}
			var body struct {
				Spec struct {
					Template struct {
						Metadata struct {
							Annotations map[string]string `json:"annotations"`
						} `json:"metadata"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
				t.Fatalf("patch %s: %v", p.GetPatch(), err)
			}
			at, err := time.Parse(time.RFC3339, body.Spec.Template.Metadata.Annotations[annotation])
			if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
				t.Errorf("patch %s: annotation %s is not the time of the restart (%v)", p.GetPatch(), annotation, err)
			}
			got, err := client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got.Spec.Template.Annotations[annotation]; !ok {
				t.Errorf("template annotations after the patch: %v", got.Spec.Template.Annotations)
			}
		})
	}
}
