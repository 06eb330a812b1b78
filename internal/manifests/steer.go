package manifests

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/steer"
)

const nameSteer = "selfkube-apiserver-steer"

// apiServerSteer runs `selfkube apiserver-steer` on every control-plane node: it gives new
// connections of the shared port only to an apiserver whose own /readyz passes, and sets
// the apiserver pods' readiness gate (steer.ConditionServing) from that.
//
// Its role reads the pods of kube-system and patches their status (the gate), and writes
// Events; the Gate acts only on pods of its node that declare the gate. What the pod can
// do on its node weighs more: CAP_SYS_PTRACE in the host's PID namespace reaches every
// process of the node, the apiserver's keys included, so it is as trusted as the
// control-plane node itself. It needs that to take the apiservers' listening sockets,
// CAP_BPF for the program, and seccomp unconfined because the runtime's default profile
// refuses bpf() without CAP_SYS_ADMIN.
func apiServerSteer(cfg *config.Config) []runtime.Object {
	labels := appLabels(nameSteer, componentControlPlane)
	health := probe("127.0.0.1", steer.DefaultHealthPort, "/healthz", corev1.URISchemeHTTP, 10, 3)
	ready := probe("127.0.0.1", steer.DefaultHealthPort, "/readyz", corev1.URISchemeHTTP, 2, 1)
	ds := hostAgentDaemonSet(nameSteer, labels)
	spec := &ds.Spec.Template.Spec
	spec.HostPID = true
	spec.NodeSelector = map[string]string{node.LabelControlPlane: ""}
	spec.Tolerations = controlPlaneTolerations()
	spec.SecurityContext = runtimeDefaultSeccomp()
	spec.Containers = []corev1.Container{{
		Name:            "steer",
		Image:           cfg.Cluster.Image(config.ImageSelfkube),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"/usr/local/bin/selfkube", "apiserver-steer",
			"--node-name=$(NODE_NAME)",
			"--port=" + strconv.Itoa(apiServerPort),
			"--health-bind-address=127.0.0.1:" + strconv.Itoa(steer.DefaultHealthPort)},
		Env: []corev1.EnvVar{
			fieldEnv("NODE_NAME", "spec.nodeName"),
			// This node's apiserver, like the checkpointer: the gate matters only
			// where an apiserver of this node runs.
			fieldEnv("KUBERNETES_SERVICE_HOST", "status.hostIP"),
			{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(apiServerPort)},
		},
		SecurityContext: &corev1.SecurityContext{
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"BPF", "SYS_PTRACE"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
		},
		Resources:      requests(10, 24),
		LivenessProbe:  health,
		ReadinessProbe: ready,
	}}
	return []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: objectMeta(nameSteer, Namespace, labels)},
		&rbacv1.Role{
			ObjectMeta: objectMeta(nameSteer, Namespace, labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(nameSteer, Namespace, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nameSteer},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameSteer, Namespace: Namespace}},
		},
		ds,
	}
}
