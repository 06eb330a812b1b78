package upgrade

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/controlplane"
)

// A kubelet may be upgraded only once the control plane runs its version or a newer
// one, and, where the ControlPlane can be read, once its roll-out is done everywhere.
func TestControlPlaneAt(t *testing.T) {
	cp := func(version string, generation, lkg int64) *controlplane.ControlPlane {
		c := &controlplane.ControlPlane{Spec: controlplane.Spec{KubernetesVersion: version}}
		c.Generation = generation
		if lkg > 0 {
			c.Status.LastKnownGood = &controlplane.Revision{Generation: lkg}
		}
		return c
	}
	for _, tc := range []struct {
		name, target, apiserver, published string
		cp                                 *controlplane.ControlPlane
		wantErr                            string // "" for allowed
	}{
		{"apiserver at the target, nothing else to read", "v1.36.3", "v1.36.3", "", nil, ""},
		{"apiserver newer", "v1.36.1", "v1.36.3", "", nil, ""},
		{"apiserver older: control plane first", "v1.36.3", "v1.35.4", "", nil, "selfkube upgrade apply v1.36.3"},
		{"a node: kubeadm-config says the target", "v1.36.3", "v1.36.3", "v1.36.3", nil, ""},
		{"a node: one apiserver answers new, kubeadm-config still old", "v1.36.3", "v1.36.3", "v1.35.4", nil, "not done everywhere (kubeadm-config says v1.35.4)"},
		{"rolled out everywhere", "v1.36.3", "v1.36.3", "", cp("v1.36.3", 4, 4), ""},
		{"one apiserver answers new, roll-out not done", "v1.36.3", "v1.36.3", "", cp("v1.36.3", 4, 3), "still rolling out generation 4"},
		{"spec older than the kubelet", "v1.36.3", "v1.36.3", "", cp("v1.35.4", 4, 4), "ControlPlane asks for v1.35.4"},
		{"no roll-out recorded yet", "v1.36.3", "v1.36.3", "", cp("v1.36.3", 1, 0), "still rolling out"},
		{"not a version", "latest", "v1.36.3", "", nil, "kubelet version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ControlPlaneAt(tc.target, tc.apiserver, tc.published, tc.cp)
			if tc.wantErr == "" && err != nil {
				t.Errorf("ControlPlaneAt = %v, want allowed", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("ControlPlaneAt = %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}

// The version upgraded to is what the binary says it is; anything else is refused.
func TestKubeletVersion(t *testing.T) {
	dir := t.TempDir()
	script := func(name, out string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho '"+out+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if v, err := KubeletVersion(context.Background(), script("kubelet", "Kubernetes v1.36.3")); err != nil || v != "v1.36.3" {
		t.Errorf("KubeletVersion = %q, %v; want v1.36.3", v, err)
	}
	if _, err := KubeletVersion(context.Background(), script("other", "etcd Version: 3.6.6")); err == nil {
		t.Error("a binary that is not a kubelet: no error")
	}
	if _, err := KubeletVersion(context.Background(), filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing binary: no error")
	}
}

// A drain leaves the self-hosted controller manager, scheduler and operator where they
// are (nothing would start them again on a single control-plane node), and only those.
func TestDrainLeavesTheSelfHostedControlPlane(t *testing.T) {
	pod := func(ns, name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": name}}}
	}
	for _, tc := range []struct {
		p    *corev1.Pod
		want bool
	}{
		{pod("kube-system", "kube-scheduler"), true},
		{pod("kube-system", "kube-controller-manager"), true},
		{pod("kube-system", "selfkube-controller"), true},
		{pod("kube-system", "coredns"), false},
		{pod("default", "kube-scheduler"), false}, // a user's pod named so is drained like any other
	} {
		if got := selfHosted(tc.p); got != tc.want {
			t.Errorf("selfHosted(%s/%s) = %v, want %v", tc.p.Namespace, tc.p.Labels["app.kubernetes.io/name"], got, tc.want)
		}
	}
}

// The new kubelet replaces the installed one, which is kept as .previous; going back
// with --kubelet-binary <path>.previous swaps them and loses neither.
func TestInstallKeepsThePreviousKubelet(t *testing.T) {
	dir := t.TempDir()
	write := func(p, version string) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'Kubernetes "+version+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path, newBin := filepath.Join(dir, "kubelet"), filepath.Join(dir, "new-kubelet")
	write(path, "v1.35.4")
	write(newBin, "v1.36.3")
	says := func(p string) string {
		v, err := KubeletVersion(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := install(NodeOptions{KubeletBinary: newBin, KubeletPath: path}, "v1.36.3", "v1.35.4", nil); err != nil {
		t.Fatal(err)
	}
	if got, prev := says(path), says(path+".previous"); got != "v1.36.3" || prev != "v1.35.4" {
		t.Errorf("after the upgrade: installed %s, previous %s; want v1.36.3 and v1.35.4", got, prev)
	}
	if err := install(NodeOptions{KubeletBinary: path + ".previous", KubeletPath: path}, "v1.35.4", "v1.36.3", nil); err != nil {
		t.Fatal(err)
	}
	if got, prev := says(path), says(path+".previous"); got != "v1.35.4" || prev != "v1.36.3" {
		t.Errorf("after going back: installed %s, previous %s; want v1.35.4 and v1.36.3", got, prev)
	}
	if es, _ := os.ReadDir(dir); len(es) != 3 {
		t.Errorf("files left beside the kubelet: %v", es)
	}
}
