package manifests

import (
	"fmt"
	"path"
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
	health := probe("127.0.0.1", checkpoint.CheckpointerMetricsPort, "/healthz", corev1.URISchemeHTTP, 10, 3)
	ds := hostAgentDaemonSet(nameCheckpointer, labels)
	spec := &ds.Spec.Template.Spec
	spec.NodeSelector = map[string]string{node.LabelControlPlane: ""}
	spec.Tolerations = controlPlaneTolerations()
	spec.SecurityContext = runtimeDefaultSeccomp()
	spec.Volumes = []corev1.Volume{manifestsVol, checkpointsVol, runtimeVol}
	spec.Containers = []corev1.Container{{
		Name:            "checkpointer",
		Image:           cfg.Cluster.Image(config.ImageSelfkube),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"/usr/local/bin/selfkube", "checkpointer",
			"--node-name=$(NODE_NAME)", "--pod-name=$(POD_NAME)",
			"--cri-socket=" + cfg.Node.CRISocket,
			"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(checkpoint.CheckpointerMetricsPort)},
		Env: []corev1.EnvVar{
			fieldEnv("NODE_NAME", "spec.nodeName"),
			fieldEnv("POD_NAME", "metadata.name"),
			// The apiserver of this node (or its checkpoint, or init's
			// temporary one, all on the node's address): "the API is
			// unreachable" means this node's control plane is down.
			fieldEnv("KUBERNETES_SERVICE_HOST", "status.hostIP"),
			{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(apiServerPort)},
		},
		VolumeMounts: []corev1.VolumeMount{manifestsMount, checkpointsMount, runtimeMount},
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
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"},
					ResourceNames: []string{nameAPIServer, nameControllerManager, nameScheduler}},
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
	if cfg.Cluster.Etcd.Local != nil {
		objs = append(objs, etcdAgent(ds, labels, cfg.Cluster.Etcd.Local.Snapshots)...)
	}
	return objs
}

// etcdAgent adds the etcd part of the node agent (package etcdagent) to the checkpointer
// ds: etcd's CA and healthcheck client certificate (read-only, not the CA's key), the
// snapshot directory, and a ClusterRole to read the ControlPlane and report its
// snapshots in the status. The operator's word is in that status, which only the
// operator and the node agents (and cluster administrators) may write.
func etcdAgent(ds *appsv1.DaemonSet, labels map[string]string, snapshots *config.EtcdSnapshots) []runtime.Object {
	spec := &ds.Spec.Template.Spec
	c := &spec.Containers[0]
	for _, f := range []struct{ name, file string }{
		{"etcd-ca", "ca.crt"}, {"etcd-client-cert", "healthcheck-client.crt"}, {"etcd-client-key", "healthcheck-client.key"},
	} {
		v, m := hostPathVolume(f.name, path.Join(EtcdPKIDir, f.file), corev1.HostPathFile, true)
		spec.Volumes, c.VolumeMounts = append(spec.Volumes, v), append(c.VolumeMounts, m)
	}
	v, m := hostPathVolume("etcd-snapshots", EtcdSnapshotDir, corev1.HostPathDirectoryOrCreate, false)
	spec.Volumes, c.VolumeMounts = append(spec.Volumes, v), append(c.VolumeMounts, m)
	c.Command = append(c.Command, "--etcd-pki-dir="+EtcdPKIDir, "--etcd-snapshot-dir="+EtcdSnapshotDir)
	if snapshots != nil && snapshots.Interval != nil {
		c.Command = append(c.Command, "--etcd-snapshot-interval="+snapshots.Interval.Duration.String(),
			fmt.Sprintf("--etcd-snapshot-keep=%d", snapshots.Keep))
	}
	name := nameCheckpointer + ":etcd"
	return []runtime.Object{
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
		},
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
