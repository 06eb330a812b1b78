package manifests

import (
	"net"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/config"
)

const nameNetwork = "selfkube-network"

// podNetwork is selfkube's built-in pod network: a DaemonSet of `selfkube network` on
// every node. Its init container installs the CNI plugins from the selfkube image; the
// agent writes the node's bridge configuration from its pod CIDR and routes every other
// node's pod CIDR through that node's address. Until it runs only host-network pods
// start, so it must itself run on the host network and tolerate everything.
//
// It reaches the API through the control-plane endpoint, not the kubernetes Service: it
// is what makes Services work (with kube-proxy), and it must keep working while the
// Service's endpoints change hands between apiservers.
func podNetwork(cfg *config.Config) []runtime.Object {
	labels := appLabels(nameNetwork, "network")
	return []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: objectMeta(nameNetwork, Namespace, labels)},
		&rbacv1.ClusterRole{
			ObjectMeta: objectMeta(nameNetwork, "", labels),
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"},
			}},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: objectMeta(nameNetwork, "", labels),
			RoleRef:    clusterRole(nameNetwork),
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameNetwork, Namespace: Namespace}},
		},
		podNetworkDaemonSet(cfg),
	}
}

// podNetworkDaemonSet is the pod network's DaemonSet (podNetwork): what the operator
// rolls out and judges.
func podNetworkDaemonSet(cfg *config.Config) *appsv1.DaemonSet {
	labels := appLabels(nameNetwork, "network")
	image := cfg.Cluster.Image(config.ImageSelfkube)
	binVol, binMount := hostPathVolume("cni-bin", "/opt/cni/bin", corev1.HostPathDirectoryOrCreate, false)
	binMount.MountPath = "/host/opt/cni/bin"
	confVol, confMount := hostPathVolume("cni-conf", "/etc/cni/net.d", corev1.HostPathDirectoryOrCreate, false)
	confMount.MountPath = "/host/etc/cni/net.d"
	env := []corev1.EnvVar{
		fieldEnv("NODE_NAME", "spec.nodeName"),
		{Name: "KUBERNETES_SERVICE_HOST", Value: cfg.Cluster.EndpointHost()},
		{Name: "KUBERNETES_SERVICE_PORT", Value: endpointPort(cfg)},
	}
	privileged := &corev1.SecurityContext{
		// Routes and nftables rules in the host's network namespace.
		Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}},
	}
	ds := hostAgentDaemonSet(nameNetwork, labels)
	ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	ds.Spec.Template.Spec.InitContainers = []corev1.Container{{
		Name:            "install-cni",
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/usr/local/bin/selfkube", "network", "install-cni"},
		VolumeMounts:    []corev1.VolumeMount{binMount},
	}}
	ds.Spec.Template.Spec.Containers = []corev1.Container{{
		Name:            "agent",
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/usr/local/bin/selfkube", "network", "--cluster-cidr=" + cfg.Cluster.Networking.PodSubnet},
		Env:             env,
		VolumeMounts:    []corev1.VolumeMount{confMount},
		SecurityContext: privileged,
		Resources:       requests(50, 32),
	}}
	ds.Spec.Template.Spec.Volumes = []corev1.Volume{binVol, confVol}
	return ds
}

// hostAgentDaemonSet is the frame of a selfkube agent on the host network (pod network,
// checkpointer): one pod a node, replaced one node at a time, node-critical, with its
// own service account and the node's resolver (it runs before cluster DNS can). The
// caller adds containers, volumes, tolerations and placement.
func hostAgentDaemonSet(name string, labels map[string]string) *appsv1.DaemonSet {
	selector := map[string]string{labelName: name, LabelManagedBy: ManagedBy}
	podLabels := map[string]string{LabelManagedBy: ManagedBy}
	for k, v := range labels {
		podLabels[k] = v
	}
	return &appsv1.DaemonSet{
		ObjectMeta: objectMeta(name, Namespace, labels),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					HostNetwork:        true,
					DNSPolicy:          corev1.DNSDefault,
					PriorityClassName:  priorityNodeCritical,
					ServiceAccountName: name,
				},
			},
		},
	}
}

// endpointPort is the port of the control-plane endpoint.
func endpointPort(cfg *config.Config) string {
	if _, port, err := net.SplitHostPort(cfg.Cluster.ControlPlaneEndpoint); err == nil {
		return port
	}
	return strconv.Itoa(config.DefaultAPIServerPort)
}
