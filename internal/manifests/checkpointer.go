package manifests

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/node"
)

const nameCheckpointer = "selfkube-checkpointer"

// checkpointer runs `selfkube checkpointer` on every control-plane node: it keeps a
// checkpoint of the pods annotated with checkpoint.AnnotationCheckpoint bound to its
// node, and starts them as static pods when the API cannot tell the kubelet to run them.
//
// Its role can read the pods of kube-system and, by name, only the Secrets those pods
// mount; it writes Events. It reaches the API through this node's own apiserver (it
// must work before kube-proxy does, during init, and whatever other control-plane nodes
// do), and the container runtime through its socket, to see what runs on the node.
func checkpointer(cfg *config.Config) []runtime.Object {
	labels := appLabels(nameCheckpointer, componentControlPlane)
	manifestsVol, manifestsMount := hostPathVolume("manifests", "/etc/kubernetes/manifests", corev1.HostPathDirectoryOrCreate, false)
	checkpointsVol, checkpointsMount := hostPathVolume("checkpoints", checkpoint.CheckpointsDir, corev1.HostPathDirectoryOrCreate, false)
	socketDir := criSocketDir(cfg.Node.CRISocket)
	runtimeVol, runtimeMount := hostPathVolume("runtime", socketDir, corev1.HostPathDirectory, false)
	// The certificate part renews etcd's certificates and the kubeconfigs in place (a
	// file is replaced by a rename in its directory) and reads the CA keys: the node's
	// whole /etc/kubernetes and /var/lib/selfkube (the asset directory init ran from),
	// at the same paths. The pod could take the node already (it writes static pods).
	kubernetesVol, kubernetesMount := hostPathVolume("kubernetes", "/etc/kubernetes", corev1.HostPathDirectory, false)
	stateVol, stateMount := hostPathVolume("selfkube-state", StateDir, corev1.HostPathDirectoryOrCreate, false)
	health := probe("127.0.0.1", checkpoint.CheckpointerMetricsPort, "/healthz", corev1.URISchemeHTTP, 10, 3)
	ds := hostAgentDaemonSet(nameCheckpointer, labels)
	spec := &ds.Spec.Template.Spec
	spec.NodeSelector = map[string]string{node.LabelControlPlane: ""}
	spec.Tolerations = controlPlaneTolerations()
	spec.SecurityContext = runtimeDefaultSeccomp()
	spec.Volumes = []corev1.Volume{kubernetesVol, stateVol, manifestsVol, checkpointsVol, runtimeVol}
	spec.Containers = []corev1.Container{{
		Name:            "checkpointer",
		Image:           cfg.Cluster.Image(config.ImageSelfkube),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"/usr/local/bin/selfkube", "checkpointer",
			"--node-name=$(NODE_NAME)", "--pod-name=$(POD_NAME)",
			"--cri-socket=" + cfg.Node.CRISocket,
			"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(checkpoint.CheckpointerMetricsPort),
			"--rotate-certificates"},
		Env: []corev1.EnvVar{
			fieldEnv("NODE_NAME", "spec.nodeName"),
			fieldEnv("POD_NAME", "metadata.name"),
			// The apiserver of this node (or its checkpoint, or init's
			// temporary one, all on the node's address): "the API is
			// unreachable" means this node's control plane is down.
			fieldEnv("KUBERNETES_SERVICE_HOST", "status.hostIP"),
			{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(apiServerPort)},
		},
		VolumeMounts: []corev1.VolumeMount{kubernetesMount, stateMount, manifestsMount, checkpointsMount, runtimeMount},
		// The hand-back fence: an nftables table in the host's network namespace.
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}},
		},
		Resources:      requests(20, 32),
		LivenessProbe:  health,
		ReadinessProbe: health,
	}}
	objs := []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: objectMeta(nameCheckpointer, Namespace, labels)},
		&rbacv1.Role{
			ObjectMeta: objectMeta(nameCheckpointer, Namespace, labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
				// Only the Secrets of the checkpointed components (each is named after
				// its component): never the service account or token Secrets.
				// Their certificates are renewed in place, and the component rolled.
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "update"},
					ResourceNames: []string{nameAPIServer, nameControllerManager, nameScheduler}},
				{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"get", "patch"},
					ResourceNames: []string{nameAPIServer}},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"},
					ResourceNames: []string{nameControllerManager, nameScheduler}},
				// The renewal window and validity.
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"},
					ResourceNames: []string{ClusterConfigName}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(nameCheckpointer, Namespace, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nameCheckpointer},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameCheckpointer, Namespace: Namespace}},
		},
		ds,
	}
	// The ControlPlane is read, and its status written, by the etcd part (the operator's
	// word to it, its snapshots and checks) and the certificate part (what it renewed).
	// The operator's word is in that status, which only the operator and the node agents
	// (and cluster administrators) may write.
	name := nameCheckpointer + ":controlplane"
	objs = append(objs,
		&rbacv1.ClusterRole{
			ObjectMeta: objectMeta(name, "", labels),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{controlplane.Group}, Resources: []string{controlplane.Resource}, Verbs: []string{"get", "list", "watch"},
					ResourceNames: []string{controlplane.Name}},
				{APIGroups: []string{controlplane.Group}, Resources: []string{controlplane.Resource + "/status"}, Verbs: []string{"patch"},
					ResourceNames: []string{controlplane.Name}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: objectMeta(name, "", labels),
			RoleRef:    clusterRole(name),
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameCheckpointer, Namespace: Namespace}},
		})
	if cfg.Cluster.Etcd.Local != nil {
		etcdAgent(ds, cfg.Cluster.Etcd.Local.Snapshots)
	}
	return objs
}

// etcdAgent turns on the etcd part of the node agent (package etcdagent) in the
// checkpointer ds: etcd's CA and healthcheck client certificate and the snapshot
// directory are below the node's /etc/kubernetes and /var/lib/selfkube, which ds mounts.
func etcdAgent(ds *appsv1.DaemonSet, snapshots *config.EtcdSnapshots) {
	c := &ds.Spec.Template.Spec.Containers[0]
	c.Command = append(c.Command, "--etcd-pki-dir="+EtcdPKIDir, "--etcd-snapshot-dir="+EtcdSnapshotDir)
	if snapshots != nil && snapshots.Interval != nil {
		c.Command = append(c.Command, "--etcd-snapshot-interval="+snapshots.Interval.Duration.String(),
			fmt.Sprintf("--etcd-snapshot-keep=%d", snapshots.Keep))
	}
}

// criSocketDir is the directory of the runtime's socket ("unix:///run/containerd/x.sock"
// → "/run/containerd"): mounting the directory, not the socket, survives a runtime
// restart that recreates the socket.
func criSocketDir(endpoint string) string {
	p := strings.TrimPrefix(endpoint, "unix://")
	if i := strings.LastIndex(p, "/"); i > 0 {
		return p[:i]
	}
	return "/run"
}
