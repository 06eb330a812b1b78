package manifests

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config"
)

// Names stock `kubeadm join` reads from kube-system.
const (
	KubeadmConfigName  = "kubeadm-config"
	KubeletConfigName  = "kubelet-config"
	kubeadmConfigKey   = "ClusterConfiguration"
	kubeletConfigKey   = "kubelet"
	kubeadmAPIVersion  = "kubeadm.k8s.io/v1beta4"
	kubeadmConfigRole  = "kubeadm:nodes-kubeadm-config"
	kubeletConfigRole  = "kubeadm:kubelet-config"
	kubeadmClusterName = "kubernetes"
)

// KubeadmCompat publishes what a stock `kubeadm join` of a worker reads, in kubeadm's
// names: the cluster's settings as a kubeadm ClusterConfiguration (kube-system/
// kubeadm-config) and the nodes' kubelet configuration (kube-system/kubelet-config),
// both readable by bootstrap-token users and nodes, as kubeadm binds them. With the
// bootstrap tokens, cluster-info and CSR approval selfkube already keeps in kubeadm's
// format, a node joins with either tool.
func KubeadmCompat(cfg *config.Config, kubelet *kubeletv1beta1.KubeletConfiguration) ([]runtime.Object, error) {
	c := &cfg.Cluster
	cluster := map[string]any{
		"apiVersion":           kubeadmAPIVersion,
		"kind":                 "ClusterConfiguration",
		"kubernetesVersion":    c.KubernetesVersion,
		"controlPlaneEndpoint": c.ControlPlaneEndpoint,
		"clusterName":          kubeadmClusterName,
		"certificatesDir":      "/etc/kubernetes/pki",
		"imageRepository":      c.ImageRepository,
		"networking": map[string]any{
			"serviceSubnet": c.Networking.ServiceSubnet,
			"podSubnet":     c.Networking.PodSubnet,
			"dnsDomain":     c.Networking.DNSDomain,
		},
	}
	if c.Etcd.Local != nil {
		cluster["etcd"] = map[string]any{"local": map[string]any{"dataDir": c.Etcd.Local.DataDir}}
	}
	clusterYAML, err := yaml.Marshal(cluster)
	if err != nil {
		return nil, fmt.Errorf("encoding the kubeadm ClusterConfiguration: %w", err)
	}
	kubeletYAML, err := yaml.Marshal(kubelet)
	if err != nil {
		return nil, fmt.Errorf("encoding the kubelet configuration: %w", err)
	}
	labels := appLabels("kubeadm-compat", componentAccess)
	readers := []rbacv1.Subject{
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: NodeBootstrapGroup},
		{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"},
	}
	objs := []runtime.Object{}
	for _, cm := range []struct{ name, key, data, role string }{
		{KubeadmConfigName, kubeadmConfigKey, string(clusterYAML), kubeadmConfigRole},
		{KubeletConfigName, kubeletConfigKey, string(kubeletYAML), kubeletConfigRole},
	} {
		objs = append(objs,
			&corev1.ConfigMap{ObjectMeta: objectMeta(cm.name, Namespace, labels), Data: map[string]string{cm.key: cm.data}},
			&rbacv1.Role{
				ObjectMeta: objectMeta(cm.role, Namespace, labels),
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
					ResourceNames: []string{cm.name}, Verbs: []string{"get"}}},
			},
			&rbacv1.RoleBinding{
				ObjectMeta: objectMeta(cm.role, Namespace, labels),
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: cm.role},
				Subjects:   readers,
			},
		)
	}
	for _, o := range objs {
		gvk, err := kindOf(o)
		if err != nil {
			return nil, err
		}
		o.GetObjectKind().SetGroupVersionKind(gvk)
	}
	return objs, nil
}

// KubeadmConfigWithVersion returns kubeadm-config cm with its ClusterConfiguration's
// kubernetesVersion set to version, and whether that changed it (a stock `kubeadm join`
// of a node reads the version there: the control plane's, once it runs everywhere). cm
// is not changed; every other field of the ClusterConfiguration is kept.
func KubeadmConfigWithVersion(cm *corev1.ConfigMap, version string) (*corev1.ConfigMap, bool, error) {
	var cluster map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data[kubeadmConfigKey]), &cluster); err != nil {
		return nil, false, fmt.Errorf("reading %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	if cluster == nil {
		return nil, false, fmt.Errorf("%s/%s has no %s", cm.Namespace, cm.Name, kubeadmConfigKey)
	}
	if cluster["kubernetesVersion"] == version {
		return cm, false, nil
	}
	cluster["kubernetesVersion"] = version
	b, err := yaml.Marshal(cluster)
	if err != nil {
		return nil, false, fmt.Errorf("encoding %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	out := cm.DeepCopy()
	out.Data[kubeadmConfigKey] = string(b)
	return out, true, nil
}

// KubeadmConfigVersion is the kubernetesVersion kubeadm-config cm says.
func KubeadmConfigVersion(cm *corev1.ConfigMap) (string, error) {
	var cluster struct {
		KubernetesVersion string `json:"kubernetesVersion"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data[kubeadmConfigKey]), &cluster); err != nil {
		return "", fmt.Errorf("reading %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return cluster.KubernetesVersion, nil
}
