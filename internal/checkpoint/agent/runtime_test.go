package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/manifests"
)

// TestLocal: only a sandbox of kube-system annotated with a valid checkpoint name makes
// its checkpoint's parent "running". Any pod may carry the annotation: a user's pod that
// did would otherwise keep the apiserver's checkpoint from ever starting.
func TestLocal(t *testing.T) {
	sandbox := func(id, namespace string, annotations map[string]string) *runtimeapi.PodSandbox {
		return &runtimeapi.PodSandbox{
			Id:          id,
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "p-" + id, Uid: "uid-" + id, Namespace: namespace},
			Annotations: annotations,
		}
	}
	annotated := func(name string) map[string]string {
		return map[string]string{checkpoint.AnnotationCheckpoint: name}
	}
	tests := []struct {
		name      string
		sandboxes []*runtimeapi.PodSandbox
		want      map[string]bool
	}{{
		name:      "the self-hosted apiserver in kube-system",
		sandboxes: []*runtimeapi.PodSandbox{sandbox("s1", "kube-system", annotated("kube-apiserver"))},
		want:      map[string]bool{"kube-apiserver": true},
	}, {
		name:      "a user's pod in default annotated as the apiserver",
		sandboxes: []*runtimeapi.PodSandbox{sandbox("s1", "default", annotated("kube-apiserver"))},
		want:      map[string]bool{},
	}, {
		name:      "a sandbox without metadata",
		sandboxes: []*runtimeapi.PodSandbox{{Id: "s1", Annotations: annotated("kube-apiserver")}},
		want:      map[string]bool{},
	}, {
		name: "invalid names in kube-system",
		sandboxes: []*runtimeapi.PodSandbox{
			sandbox("s1", "kube-system", annotated("x/../etcd")),
			sandbox("s2", "kube-system", annotated("Kube-apiserver")),
			sandbox("s3", "kube-system", annotated("")),
		},
		want: map[string]bool{},
	}, {
		name: "the checkpoint's own static pod does not count",
		sandboxes: []*runtimeapi.PodSandbox{sandbox("s1", "kube-system", map[string]string{
			checkpoint.AnnotationCheckpoint: "kube-apiserver", checkpoint.AnnotationCheckpointOf: "kube-apiserver",
		})},
		want: map[string]bool{},
	}, {
		name:      "a pod without the annotation",
		sandboxes: []*runtimeapi.PodSandbox{sandbox("s1", "kube-system", nil)},
		want:      map[string]bool{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var containers []*runtimeapi.Container
			wantContainers := map[string]bool{}
			for _, s := range tt.sandboxes {
				id := "c-" + s.Id
				containers = append(containers, &runtimeapi.Container{Id: id, PodSandboxId: s.Id})
				wantContainers[id] = true
			}
			got := local(tt.sandboxes, containers, manifests.Namespace)
			if diff := cmp.Diff(tt.want, got.Running); diff != "" {
				t.Errorf("Running (-want +got):\n%s", diff)
			}
			// Every running container counts for whether a pod's containers run here.
			if diff := cmp.Diff(wantContainers, got.Containers); diff != "" {
				t.Errorf("Containers (-want +got):\n%s", diff)
			}
		})
	}
}
