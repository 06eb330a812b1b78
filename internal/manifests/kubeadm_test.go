package manifests

import (
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
