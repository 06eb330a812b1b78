package manifests

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config"
)

// Names of the cluster configuration published in the cluster.
const (
	ClusterConfigName = "selfkube-config"
	ClusterConfigKey  = "ClusterConfiguration"
)

// ReadClusterConfig reads the ClusterConfiguration published in the cluster.
func ReadClusterConfig(ctx context.Context, client kubernetes.Interface) (config.ClusterConfiguration, error) {
	cm, err := client.CoreV1().ConfigMaps(Namespace).Get(ctx, ClusterConfigName, metav1.GetOptions{})
	if err != nil {
		return config.ClusterConfiguration{}, fmt.Errorf("reading the cluster configuration (%s/%s): %w", Namespace, ClusterConfigName, err)
	}
	return ClusterConfigFrom(cm)
}

// ClusterConfigFrom reads the ClusterConfiguration published in cm (the ConfigMap
// ClusterConfigName), as it was published: defaulted and valid when init wrote it.
func ClusterConfigFrom(cm *corev1.ConfigMap) (config.ClusterConfiguration, error) {
	var c config.ClusterConfiguration
	js, err := yaml.YAMLToJSON([]byte(cm.Data[ClusterConfigKey]))
	if err != nil {
		return c, fmt.Errorf("%s/%s is damaged: %w", cm.Namespace, cm.Name, err)
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &c); err != nil {
		return c, fmt.Errorf("%s/%s is damaged: %w", cm.Namespace, cm.Name, err)
	}
	return c, nil
}

// clusterConfig publishes the ClusterConfiguration (it holds no secret) in
// kube-system/selfkube-config, readable by joining nodes (bootstrap-token users) and
// nodes: a joining node derives its kubelet's configuration from it (cluster DNS,
// domain, version) instead of being told every value again.
func clusterConfig(cfg *config.Config) ([]runtime.Object, error) {
	data, err := yaml.Marshal(&cfg.Cluster)
	if err != nil {
		return nil, fmt.Errorf("encoding the cluster configuration: %w", err)
	}
	labels := appLabels(ClusterConfigName, componentAccess)
	role := "selfkube:get-cluster-config"
	return []runtime.Object{
		&corev1.ConfigMap{
			ObjectMeta: objectMeta(ClusterConfigName, Namespace, labels),
			Data:       map[string]string{ClusterConfigKey: string(data)},
		},
		&rbacv1.Role{
			ObjectMeta: objectMeta(role, Namespace, labels),
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"configmaps"},
				ResourceNames: []string{ClusterConfigName}, Verbs: []string{"get"},
			}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(role, Namespace, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
			Subjects: []rbacv1.Subject{
				{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: NodeBootstrapGroup},
				{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"},
			},
		},
	}, nil
}
