package manifests

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/approver"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/node"
)

// ControllerName names the selfkube-controller Deployment, its ServiceAccount, its
// Lease and its Events' source; ControllerHealthPort is its /healthz port, on loopback.
const (
	ControllerName       = "selfkube-controller"
	ControllerHealthPort = 10268
)

const nameController = ControllerName

// selfkubeController runs `selfkube controller` on control-plane nodes: two replicas, one
// leading (a Lease), which approve the kubelet client certificates of joining nodes
// (internal/approver). It reaches the API through its node's own apiserver, like the
// checkpointer, so it works before kube-proxy does.
//
// Its role: read CSRs and Nodes, approve CSRs for the kubelet-client signer only (not
// other signers), update the ledger ConfigMap and its Lease by name, write Events. It
// mounts nothing from the host and runs as an unprivileged user.
func selfkubeController(cfg *config.Config) []runtime.Object {
	labels := appLabels(nameController, componentControlPlane)
	selector := map[string]string{labelName: nameController, LabelManagedBy: ManagedBy}
	podLabels := map[string]string{LabelManagedBy: ManagedBy}
	for k, v := range labels {
		podLabels[k] = v
	}
	health := probe("127.0.0.1", ControllerHealthPort, "/healthz", corev1.URISchemeHTTP, 10, 3)
	deployment := &appsv1.Deployment{
		ObjectMeta: objectMeta(nameController, Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](controlPlaneReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					HostNetwork:        true,
					DNSPolicy:          corev1.DNSDefault,
					NodeSelector:       map[string]string{node.LabelControlPlane: ""},
					Tolerations:        controlPlaneTolerations(),
					PriorityClassName:  priorityClusterCritical,
					ServiceAccountName: nameController,
					Affinity:           spreadOverNodes(selector),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](65532),
						RunAsGroup:     ptr.To[int64](65532),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            "controller",
						Image:           cfg.Cluster.Image(config.ImageSelfkube),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"/usr/local/bin/selfkube", "controller",
							"--health-bind-address=127.0.0.1:" + strconv.Itoa(ControllerHealthPort)},
						Env: []corev1.EnvVar{
							fieldEnv("POD_NAME", "metadata.name"),
							// This node's apiserver (see the checkpointer).
							fieldEnv("KUBERNETES_SERVICE_HOST", "status.hostIP"),
							{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(apiServerPort)},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						Resources:     requests(10, 32),
						LivenessProbe: health,
					}},
				},
			},
		},
	}
	sa := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameController, Namespace: Namespace}}
	events := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}
	objs := []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: objectMeta(nameController, Namespace, labels)},
		&rbacv1.ClusterRole{
			ObjectMeta: objectMeta(nameController, "", labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests/approval"}, Verbs: []string{"update"}},
				// Approving needs "approve" on the signer: only the kubelets' client and
				// serving signers.
				{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"signers"}, Verbs: []string{"approve"},
					ResourceNames: []string{certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName}},
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
				// The operator: reads the ControlPlane, reports in its status.
				{APIGroups: []string{controlplane.Group}, Resources: []string{controlplane.Resource}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{controlplane.Group}, Resources: []string{controlplane.Resource + "/status"}, Verbs: []string{"update", "patch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: objectMeta(nameController, "", labels),
			RoleRef:    clusterRole(nameController),
			Subjects:   sa,
		},
		&rbacv1.Role{
			ObjectMeta: objectMeta(nameController, Namespace, labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"},
					ResourceNames: []string{approver.LedgerName}},
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"},
					ResourceNames: []string{nameController}},
				// create cannot be limited by name; the lease is made once.
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
				events,
				// The operator: applies the control plane's workloads (by name), judges them by
				// their status and their pods, renders them from the published configuration.
				{APIGroups: []string{"apps"}, Resources: []string{"daemonsets", "deployments", "replicasets"}, Verbs: []string{"get", "list", "watch"}},
				// create: putting back a deleted one is a server-side apply, which the
				// apiserver authorizes as a create of that name.
				{APIGroups: []string{"apps"}, Resources: []string{"daemonsets", "deployments"}, Verbs: []string{"create", "patch"},
					ResourceNames: []string{nameAPIServer, nameControllerManager, nameScheduler, nameProxy, nameCoreDNS, nameNetwork}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{ClusterConfigName}},
				// …and, once a version runs everywhere, says so to a stock `kubeadm join`.
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}, ResourceNames: []string{KubeadmConfigName}},
			},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(nameController, Namespace, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nameController},
			Subjects:   sa,
		},
		// Events about cluster-scoped objects (CSRs) go to the default namespace.
		&rbacv1.Role{
			ObjectMeta: objectMeta(nameController+":events", metav1.NamespaceDefault, labels),
			Rules:      []rbacv1.PolicyRule{events},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(nameController+":events", metav1.NamespaceDefault, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nameController + ":events"},
			Subjects:   sa,
		},
		// The ledger starts empty; the approver adds to it (its own field manager, so a
		// later apply of this object leaves the entries alone).
		&corev1.ConfigMap{ObjectMeta: objectMeta(approver.LedgerName, approver.LedgerNamespace, labels)},
		deployment,
	}
	return objs
}

// spreadOverNodes prefers to put the pods matched by selector on different nodes.
func spreadOverNodes(selector map[string]string) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
				TopologyKey:   "kubernetes.io/hostname",
			},
		}},
	}}
}
