// Package checkpointtest holds the fixtures the checkpointer's tests share (package
// checkpoint and package agent): the self-hosted apiserver's pod as the API shows it,
// made from the manifests selfkube renders, and views of the files under a directory.
// It imports neither package, so the tests of both can use it.
package checkpointtest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

const (
	// Node is the node APIServerPod is bound to, and HostIP its address.
	Node   = "cp-1"
	HostIP = "172.31.0.2"
)

// Created is when APIServerPod was created.
var Created = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

// renderedDir holds the rendered manifests of the default configuration (package
// manifests' golden files), relative to the module's root: the pods under test are made
// from the real templates, so a template change the checkpointer cannot handle fails
// its tests.
const renderedDir = "internal/manifests/testdata/default/manifests"

// readRendered decodes one rendered manifest strictly.
func readRendered(t *testing.T, file string, into any) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, renderedDir, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("decoding %s: %v", file, err)
	}
}

// moduleRoot is the nearest directory above the working directory (a test's package
// directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// APIServerPod is a pod of the self-hosted apiserver DaemonSet as the API shows it
// once it runs on Node: the template plus what the DaemonSet controller, the
// scheduler, the ServiceAccount admission and the kubelet add. It returns the pod, its
// DaemonSet and the Secret it mounts.
func APIServerPod(t *testing.T) (*corev1.Pod, *appsv1.DaemonSet, *corev1.Secret) {
	t.Helper()
	ds := &appsv1.DaemonSet{}
	readRendered(t, "15-kube-apiserver-daemonset.yaml", ds)
	secret := &corev1.Secret{}
	readRendered(t, "12-kube-apiserver-secret.yaml", secret)

	tmpl := ds.Spec.Template.DeepCopy()
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = "kube-apiserver-x7k2p", ds.Namespace
	pod.UID, pod.ResourceVersion = "5d0b6a4e-0000-4000-8000-000000000001", "1042"
	pod.CreationTimestamp = metav1.NewTime(Created)
	pod.Labels["controller-revision-hash"] = "6f9c8d7b5"
	pod.Labels["pod-template-generation"] = "1"
	pod.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, Controller: ptr.To(true),
	}}
	pod.Spec.NodeName = Node
	pod.Spec.SchedulerName = corev1.DefaultSchedulerName
	pod.Spec.ServiceAccountName, pod.Spec.DeprecatedServiceAccount = "default", "default" //nolint:staticcheck // set as the API does
	pod.Spec.Priority = ptr.To[int32](2000001000)
	pod.Spec.PreemptionPolicy = ptr.To(corev1.PreemptLowerPriority)
	pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{Node}}},
		}}},
	}}
	// The token volume the ServiceAccount admission adds to a pod that mounts one.
	pod.Spec.AutomountServiceAccountToken = nil
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "kube-api-access-9xw2q", VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644), Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
			}}}},
		}},
	}})
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
			Name: "kube-api-access-9xw2q", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true,
		})
	}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		HostIP:     HostIP,
		HostIPs:    []corev1.HostIP{{IP: HostIP}},
		PodIP:      HostIP,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "kube-apiserver", Ready: true, ContainerID: "containerd://0a1b2c3d",
		}},
	}
	return pod, ds, secret
}

// Tree is every file under dir by slash path and content, and fails on any file not
// 0600 or directory below dir not 0700: the checkpoints hold the control plane's
// credentials.
func Tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700 | fs.ModeDir
		}
		if rel != "." && info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", rel, info.Mode(), want)
		}
		if !d.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)] = string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// ReadPod decodes a pod file strictly.
func ReadPod(t *testing.T, file string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(data, pod); err != nil {
		t.Fatalf("decoding %s: %v", file, err)
	}
	return pod
}

// Snapshot is every file and directory under root, files with their content; the
// Store's lock file is left out.
func Snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() == ".lock" {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[filepath.ToSlash(rel)+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
