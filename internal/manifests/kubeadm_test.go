package manifests

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func TestKubeadmCompat(t *testing.T) {
	cfg := defaultConfig(t)
	kc := &kubeletv1beta1.KubeletConfiguration{CgroupDriver: "cgroupfs", ClusterDomain: "cluster.local"}
	objs, err := KubeadmCompat(cfg, kc)
	if err != nil {
		t.Fatal(err)
	}
	cms := map[string]*corev1.ConfigMap{}
	bound := map[string][]string{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			cms[o.Name] = o
		case *rbacv1.RoleBinding:
			for _, s := range o.Subjects {
				bound[o.RoleRef.Name] = append(bound[o.RoleRef.Name], s.Name)
			}
		}
		if o.GetObjectKind().GroupVersionKind().Kind == "" {
			t.Errorf("%T has no kind: it cannot be applied as it is", o)
		}
	}
	var cluster map[string]any
	if err := yaml.Unmarshal([]byte(cms["kubeadm-config"].Data["ClusterConfiguration"]), &cluster); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
		"kubernetesVersion": cfg.Cluster.KubernetesVersion, "controlPlaneEndpoint": cfg.Cluster.ControlPlaneEndpoint,
		"certificatesDir": "/etc/kubernetes/pki",
	} {
		if cluster[k] != want {
			t.Errorf("kubeadm-config %s = %v, want %v", k, cluster[k], want)
		}
	}
	var got kubeletv1beta1.KubeletConfiguration
	if err := yaml.Unmarshal([]byte(cms["kubelet-config"].Data["kubelet"]), &got); err != nil || got.CgroupDriver != "cgroupfs" {
		t.Errorf("kubelet-config does not hold the nodes' kubelet configuration (%v): %+v", err, got)
	}
	for _, role := range []string{"kubeadm:nodes-kubeadm-config", "kubeadm:kubelet-config"} {
		if s := strings.Join(bound[role], ","); s != NodeBootstrapGroup+",system:nodes" {
			t.Errorf("%s is bound to %s, want the bootstrap-token group and nodes", role, s)
		}
	}
}

// Once a version runs everywhere the operator writes it into kubeadm-config, where a
// stock `kubeadm join` reads the control plane's version; nothing else there changes,
// and a version it says already is no change.
func TestKubeadmConfigWithVersion(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: KubeadmConfigName, Namespace: Namespace}, Data: map[string]string{
		"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.35.4\ncontrolPlaneEndpoint: 192.0.2.10:6443\n",
	}}
	out, changed, err := KubeadmConfigWithVersion(cm, "v1.36.3")
	if err != nil || !changed {
		t.Fatalf("KubeadmConfigWithVersion = changed %v, %v; want a change", changed, err)
	}
	for _, want := range []string{"kubernetesVersion: v1.36.3", "controlPlaneEndpoint: 192.0.2.10:6443", "kind: ClusterConfiguration"} {
		if !strings.Contains(out.Data["ClusterConfiguration"], want) {
			t.Errorf("kubeadm-config lost or lacks %q:\n%s", want, out.Data["ClusterConfiguration"])
		}
	}
	if !strings.Contains(cm.Data["ClusterConfiguration"], "v1.35.4") {
		t.Error("the ConfigMap given was changed")
	}
	if _, changed, err := KubeadmConfigWithVersion(out, "v1.36.3"); err != nil || changed {
		t.Errorf("the same version again: changed %v, %v; want no change", changed, err)
	}
	if _, _, err := KubeadmConfigWithVersion(&corev1.ConfigMap{Data: map[string]string{"ClusterConfiguration": "{"}}, "v1.36.3"); err == nil {
		t.Error("a kubeadm-config that is not YAML: no error")
	}
}
