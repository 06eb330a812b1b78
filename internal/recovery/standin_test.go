package recovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/status"
)

func cpNode(name, ip string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{node.LabelControlPlane: ""}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

// replica is a Ready pod of dep's ReplicaSet bound to nodeName.
func replica(dep *appsv1.Deployment, name, nodeName string) *corev1.Pod {
	isController := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels, Annotations: dep.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: dep.Name + "-abc", UID: "rs", Controller: &isController}}},
		Spec: corev1.PodSpec{NodeName: nodeName},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func controlPlaneDeployments(t *testing.T) map[string]*appsv1.Deployment {
	t.Helper()
	cfg := configtest.Config(t, nil)
	workloads, err := manifests.Workloads(cfg.Cluster, []string{cfg.Node.AdvertiseAddress})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*appsv1.Deployment{}
	for _, c := range []string{manifests.ControllerManager, manifests.Scheduler} {
		dep, ok := workloads[c].(*appsv1.Deployment)
		if !ok {
			t.Fatalf("workload %s is %T, want a Deployment", c, workloads[c])
		}
		out[c] = dep
	}
	return out
}

func TestNeedsStandIn(t *testing.T) {
	dep := controlPlaneDeployments(t)[manifests.ControllerManager]
	lost := []string{"ha2", "ha3"}
	notReady := replica(dep, "p-nr", "hw")
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	deleting := replica(dep, "p-del", "ha1")
	deleting.DeletionTimestamp = &metav1.Time{}
	other := replica(dep, "p-other", "ha2")
	other.Labels = map[string]string{"app": "something-else"}
	unannotated := dep.DeepCopy()
	unannotated.Spec.Template.Annotations = nil
	for _, tc := range []struct {
		name string
		dep  *appsv1.Deployment
		pods []*corev1.Pod
		want bool
	}{
		{"no pod at all", dep, nil, true},
		{"only on lost nodes", dep, []*corev1.Pod{replica(dep, "a", "ha2"), replica(dep, "b", "ha3")}, true},
		{"a replica bound here", dep, []*corev1.Pod{replica(dep, "a", "ha1")}, false},
		{"Ready on a live node", dep, []*corev1.Pod{replica(dep, "a", "hw")}, false},
		{"not Ready on a live node", dep, []*corev1.Pod{notReady}, true},
		{"being deleted here", dep, []*corev1.Pod{deleting}, true},
		{"a pod of something else", dep, []*corev1.Pod{other}, true},
		{"a Deployment without checkpoints", unannotated, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pods []corev1.Pod
			for _, p := range tc.pods {
				pods = append(pods, *p)
			}
			if got := needsStandIn(tc.dep, pods, "ha1", lost); got != tc.want {
				t.Errorf("needsStandIn = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStalePods(t *testing.T) {
	dep := controlPlaneDeployments(t)[manifests.Scheduler]
	mirror := replica(dep, "etcd-ha2", "ha2")
	mirror.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "ha2", Controller: new(bool)}}
	ds := replica(dep, "apiserver-ha2", "ha2")
	ds.OwnerReferences[0].Kind = "DaemonSet"
	user := replica(dep, "user", "ha2")
	user.Namespace = "default"
	pods := []corev1.Pod{*replica(dep, "s-ha1", "ha1"), *replica(dep, "s-ha2", "ha2"), *replica(dep, "s-ha3", "ha3"), *mirror, *ds, *user}
	var got []string
	for _, p := range stalePods(pods, []string{"ha2", "ha3"}) {
		got = append(got, p.Name)
	}
	if strings.Join(got, ",") != "s-ha2,s-ha3" {
		t.Errorf("stale pods %v, want the kube-system ReplicaSet pods on ha2 and ha3 only", got)
	}
}

// TestStandIns: the replicas of the controller manager and the scheduler ran on the lost
// nodes only; the phase cordons those nodes, deletes their replicas and activates here a
// checkpoint of each built from its Deployment and Secret, which the kubelet can run.
func TestStandIns(t *testing.T) {
	deps := controlPlaneDeployments(t)
	secretData := map[string][]byte{"kubeconfig": []byte("kubeconfig of the component"), "ca.crt": []byte("ca")}
	objs := []runtime.Object{cpNode("ha1", "172.31.0.41"), cpNode("ha2", "172.31.0.42"), cpNode("ha3", "172.31.0.43")}
	for c, dep := range deps {
		objs = append(objs, dep, manifests.ControlPlaneSecret(c, secretData),
			replica(dep, c+"-on-ha2", "ha2"), replica(dep, c+"-on-ha3", "ha3"))
	}
	// The cluster's configuration, for Deployments that mount it.
	objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: manifests.ClusterConfigName, Namespace: manifests.Namespace}})
	cs := fake.NewSimpleClientset(objs...)
	l := host.Layout{Root: t.TempDir()}
	d := &Data{Options: Options{Layout: l, ForceNewCluster: true, Status: status.New(os.Stderr)}, NodeName: "ha1", api: &apiClient{cs: cs}}
	ctx := context.Background()
	if err := standIns(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ha2", "ha3"} {
		got, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil || !got.Spec.Unschedulable {
			t.Errorf("lost node %s not cordoned: %v", n, err)
		}
	}
	if got, _ := cs.CoreV1().Nodes().Get(ctx, "ha1", metav1.GetOptions{}); got.Spec.Unschedulable {
		t.Errorf("this node was cordoned")
	}
	pods, err := cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("pods left on the lost nodes: %d", len(pods.Items))
	}
	for c := range deps {
		name := deps[c].Spec.Template.Annotations[checkpoint.AnnotationCheckpoint]
		active := filepath.Join(l.ManifestsDir(), checkpoint.StaticPodName(name)+".yaml")
		data, err := os.ReadFile(active)
		if err != nil {
			t.Fatalf("no active stand-in for %s: %v", c, err)
		}
		var pod corev1.Pod
		if err := yaml.Unmarshal(data, &pod); err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != "" || len(pod.Spec.Containers) == 0 || pod.Spec.Containers[0].Image != deps[c].Spec.Template.Spec.Containers[0].Image {
			t.Errorf("stand-in of %s is not a static pod of the Deployment's image: %+v", c, pod.Spec)
		}
		// Its Secret volume points at the files on the host (not below this test's root).
		found := false
		for _, v := range pod.Spec.Volumes {
			if v.HostPath != nil && strings.HasPrefix(v.HostPath.Path, filepath.Join(checkpoint.CheckpointsDir, name, "volumes")) {
				found = true
			}
		}
		if !found {
			t.Errorf("stand-in of %s mounts nothing from %s: %+v", c, filepath.Join(checkpoint.CheckpointsDir, name), pod.Spec.Volumes)
		}
		got, err := d.checkpointedSecret(c)
		if err != nil || string(got["kubeconfig"]) != "kubeconfig of the component" {
			t.Errorf("stand-in of %s lacks its Secret's files: %v %v", c, got, err)
		}
	}

	// A second run, once a replica runs here: nothing more to do, nothing undone.
	for c, dep := range deps {
		if _, err := cs.CoreV1().Pods(manifests.Namespace).Create(ctx, replica(dep, c+"-on-ha1", "ha1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := standIns(ctx, d); err != nil {
		t.Fatal(err)
	}
	pods, _ = cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{})
	if len(pods.Items) != len(deps) {
		t.Errorf("the second run changed the replicas on this node: %d pods", len(pods.Items))
	}
}
