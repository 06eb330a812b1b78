package manifests

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/steer"
)

// secretFiles lists the asset files each self-hosted component's Secret holds: only what
// that component reads. The API server gets no CA private key; only the controller
// manager, which signs node certificates, holds ca.key. The API server's encryption
// configuration and audit policy are in its Secret, not in ConfigMaps, so that they reach
// its checkpoints (and the key is not readable with ConfigMap access).
func secretFiles(cfg *config.Config) map[string][]string {
	apiserver := []string{
		FileCACert,
		FileAPIServerCert, FileAPIServerKey,
		FileAPIServerKubeletCert, FileAPIServerKubeletKey,
		FileFrontProxyCACert, FileFrontProxyClientCert, FileFrontProxyClientKey,
		FileServiceAccountPub, FileServiceAccountKey,
	}
	if cfg.Cluster.Etcd.External == nil {
		apiserver = append(apiserver, FileEtcdCACert, FileAPIServerEtcdCert, FileAPIServerEtcdKey)
	}
	if cfg.Cluster.APIServer.EncryptsSecrets() {
		apiserver = append(apiserver, FileEncryptionConfig)
	}
	if cfg.Cluster.APIServer.Audit.On() {
		apiserver = append(apiserver, FileAuditPolicy)
	}
	return map[string][]string{
		nameAPIServer: apiserver,
		nameControllerManager: {
			FileCACert, FileCAKey, FileFrontProxyCACert, FileServiceAccountKey, FileControllerManagerConf,
		},
		nameScheduler: {FileSchedulerConf},
	}
}

// controlPlaneSecret builds the Secret of a self-hosted control-plane component, named
// after it, from the asset files.
func controlPlaneSecret(cfg *config.Config, component string, files Files) (*corev1.Secret, error) {
	data := map[string][]byte{}
	for _, f := range secretFiles(cfg)[component] {
		content, err := files.need(f, fmt.Sprintf("the %s Secret", component))
		if err != nil {
			return nil, err
		}
		data[secretKey(f)] = content
	}
	return ControlPlaneSecret(component, data), nil
}

// ControlPlaneSecret is the Secret of a self-hosted control-plane component (APIServer,
// ControllerManager or Scheduler) with data, its files by key: what init applies, and what
// `selfkube recover` puts back from a checkpoint's copy (SecretVolume) when the Secret was
// deleted.
func ControlPlaneSecret(component string, data map[string][]byte) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: objectMeta(component, Namespace, appLabels(component, componentControlPlane)),
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return s
}

// controlPlaneLabels are the labels of a self-hosted control-plane pod; selector is the
// subset its controller selects on.
func controlPlaneLabels(name string) (labels, selector map[string]string) {
	selector = map[string]string{labelName: name, LabelManagedBy: ManagedBy}
	labels = appLabels(name, componentControlPlane)
	labels[LabelManagedBy] = ManagedBy
	labels[labelLegacyComponent] = name
	labels[labelLegacyTier] = componentControlPlane
	return labels, selector
}

// controlPlanePodSpec is the pod of a self-hosted control-plane component: on the host
// network of control-plane nodes, credentials from the component's Secret, no service
// account token, and no declared ports (on the host network a declared containerPort is
// a host port to the scheduler, which would forbid a surge pod beside the old one; the
// components share their port with --permit-port-sharing instead).
func controlPlanePodSpec(c corev1.Container, priority string) corev1.PodSpec {
	vol, mount := secretVolume(c.Name)
	c.VolumeMounts = append([]corev1.VolumeMount{mount}, c.VolumeMounts...)
	return corev1.PodSpec{
		Containers:                   []corev1.Container{c},
		HostNetwork:                  true,
		NodeSelector:                 map[string]string{node.LabelControlPlane: ""},
		Tolerations:                  controlPlaneTolerations(),
		PriorityClassName:            priority,
		AutomountServiceAccountToken: ptr.To(false),
		SecurityContext:              runtimeDefaultSeccomp(),
		Volumes:                      []corev1.Volume{vol},
	}
}

// podTemplate is a template the checkpointer keeps running through API outages, in the
// checkpoint called name.
func podTemplate(name string, labels map[string]string, spec corev1.PodSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      labels,
			Annotations: map[string]string{checkpoint.AnnotationCheckpoint: name},
		},
		Spec: spec,
	}
}

// apiServerDaemonSet runs one API server on every control-plane node. A new pod starts
// beside the old one (maxSurge 1, maxUnavailable 0), both serving on the shared port,
// and the old one is stopped only when the new one is ready.
func apiServerDaemonSet(cfg *config.Config, etcdMembers []string) *appsv1.DaemonSet {
	c := apiServerContainer(cfg, secretPath, "$(HOST_IP)", "")
	withEtcdMembers(&c, cfg, etcdMembers)
	c.Env = append(c.Env, fieldEnv("HOST_IP", "status.hostIP"))
	hostVols, hostMounts := apiServerHostVolumes(cfg)
	c.VolumeMounts = hostMounts
	spec := controlPlanePodSpec(c, priorityNodeCritical)
	spec.Volumes = append(spec.Volumes, hostVols...)
	// The node's resolver, not cluster DNS: the apiserver must start (after a reboot, too)
	// before CoreDNS can, also when etcd or an OIDC issuer is named by DNS.
	spec.DNSPolicy = corev1.DNSDefault
	spec.TerminationGracePeriodSeconds = ptr.To[int64](apiServerTerminationSeconds)
	// Ready only once selfkube-apiserver-steer has seen this pod's own listener answer
	// /readyz: the kubelet's probe goes through the shared port, where another pod's
	// apiserver may answer it (docs/no-api-gap.md).
	spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: steer.ConditionServing}}

	labels, selector := controlPlaneLabels(nameAPIServer)
	template := podTemplate(checkpoint.CheckpointAPIServer, labels, spec)
	// A checkpoint serves on the node's address only, like the temporary apiserver of
	// init: when the self-hosted apiserver (on every address) starts beside it, each one's
	// loopback connections reach itself, never the other's listener. It stops at once when
	// retired: the checkpointer holds new connections meanwhile (the fence port).
	template.Annotations[checkpoint.AnnotationCheckpointArgs] = `{"` + nameAPIServer + `":["--bind-address=$(HOST_IP)","--shutdown-delay-duration=0s"]}`
	template.Annotations[checkpoint.AnnotationCheckpointFencePort] = strconv.Itoa(apiServerPort)
	return &appsv1.DaemonSet{
		ObjectMeta: objectMeta(nameAPIServer, Namespace, appLabels(nameAPIServer, componentControlPlane)),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: template,
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
				},
			},
		},
	}
}

// controlPlaneReplicas of the controller manager and scheduler: one leads, one waits.
const controlPlaneReplicas = 2

// controlPlaneDeployment runs a leader-elected component: two replicas spread over
// control-plane nodes when there are several, rolled one extra pod at a time so one
// always runs.
func controlPlaneDeployment(name string, c corev1.Container) *appsv1.Deployment {
	labels, selector := controlPlaneLabels(name)
	spec := controlPlanePodSpec(c, priorityClusterCritical)
	spec.Affinity = spreadOverNodes(selector)
	return &appsv1.Deployment{
		ObjectMeta: objectMeta(name, Namespace, appLabels(name, componentControlPlane)),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](controlPlaneReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: podTemplate(name, labels, spec),
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
				},
			},
		},
	}
}

// localAPIServer is the apiserver of the node a self-hosted controller manager or
// scheduler runs on (a control-plane node, so one runs there). They talk to it rather
// than to the endpoint: the temporary apiserver does not listen on loopback, so their
// watches never have to move from it to its successor, and they keep working when the
// endpoint (a load balancer) does not.
//
// Always 127.0.0.1, also on an IPv6 node: the self-hosted apiserver listens on every
// address of both families, and [::1] is where kube-apiserver's own loopback client
// goes, which selfkube-apiserver-steer leaves to the kernel's choice; 127.0.0.1 is
// steered to a ready apiserver.
func localAPIServer(_ *config.Config) string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(apiServerPort))
}

func controllerManagerDeployment(cfg *config.Config) *appsv1.Deployment {
	return standInAtNodeAddress(cfg, controlPlaneDeployment(nameControllerManager, controllerManagerContainer(cfg, secretPath, localAPIServer(cfg))))
}

func schedulerDeployment(cfg *config.Config) *appsv1.Deployment {
	return standInAtNodeAddress(cfg, controlPlaneDeployment(nameScheduler, schedulerContainer(cfg, secretPath, localAPIServer(cfg))))
}

// standInAtNodeAddress makes the checkpoint of a controller manager or scheduler talk to
// the apiserver on the node's address (HOST_IP) instead of loopback: that is where a
// checkpoint of the apiserver serves (it does not listen on loopback), so the stand-ins
// keep working together while the self-hosted apiserver is absent, e.g. when its
// DaemonSet was deleted and only the controller manager's stand-in can create its pods
// again. The self-hosted pods themselves keep talking to loopback.
func standInAtNodeAddress(cfg *config.Config, d *appsv1.Deployment) *appsv1.Deployment {
	c := &d.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, fieldEnv("HOST_IP", "status.hostIP"))
	// The family is the service network's, as Workloads takes it: init's render and the
	// operator's must be the same.
	host := "$(HOST_IP)"
	if ip, _, err := net.ParseCIDR(strings.Split(cfg.Cluster.Networking.ServiceSubnet, ",")[0]); err == nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	args, err := json.Marshal(map[string][]string{c.Name: {"--master=https://" + host + ":" + strconv.Itoa(apiServerPort)}})
	if err != nil { // a map of strings always marshals
		panic(err)
	}
	d.Spec.Template.Annotations[checkpoint.AnnotationCheckpointArgs] = string(args)
	return d
}

// disruptionBudget keeps at least one replica of a control-plane Deployment through
// voluntary disruptions such as node drains.
func disruptionBudget(name string) *policyv1.PodDisruptionBudget {
	_, selector := controlPlaneLabels(name)
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: objectMeta(name, Namespace, appLabels(name, componentControlPlane)),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector:     &metav1.LabelSelector{MatchLabels: selector},
		},
	}
}

// withEtcdMembers makes the apiserver c of a cluster with local etcd list, after its own
// node's member (the loopback address), the member of every address in members: while
// its own member restarts (a change of etcd's flags, one member at a time), an
// apiserver goes on serving from the others instead of failing every request, and so
// do the kubelet's calls that the member's restart waits for. etcd's client balances
// over the endpoints that answer (the local member is no more preferred than the
// others); with one member it lists that one twice.
func withEtcdMembers(c *corev1.Container, cfg *config.Config, members []string) {
	if _, own := cfg.Cluster.APIServer.ExtraArgs["etcd-servers"]; cfg.Cluster.Etcd.Local == nil || len(members) == 0 || own {
		return // an external etcd's endpoints, or the user's own list, stay as given
	}
	for i, arg := range c.Command {
		if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
			servers := []string{v}
			for _, m := range slices.Sorted(slices.Values(members)) {
				servers = append(servers, "https://"+net.JoinHostPort(m, strconv.Itoa(etcdClientPort)))
			}
			c.Command[i] = "--etcd-servers=" + strings.Join(slices.Compact(servers), ",")
		}
	}
}
