package manifests

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	componentbaseconfigv1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/kubeconfig"
)

const (
	componentNetworking = "networking"
	proxyConfigDir      = "/var/lib/kube-proxy"
	// ProxyName names kube-proxy's DaemonSet, ServiceAccount and ConfigMap.
	ProxyName = "kube-proxy"
	// ProxySelector selects the kube-proxy pods.
	ProxySelector = labelLegacyK8sApp + "=" + nameProxy
	// proxyHealthzPort is kube-proxy's default healthz port: it answers 200 once the
	// node's Service rules are synced.
	proxyHealthzPort = 10256
	// ProxyConfigKey and ProxyKubeconfigKey are the data keys of the kube-proxy ConfigMap.
	ProxyConfigKey     = "config.conf"
	ProxyKubeconfigKey = "kubeconfig.conf"
	serviceAccountDir  = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// kubeProxy builds kube-proxy: its ServiceAccount, the binding to system:node-proxier,
// its ConfigMap and the DaemonSet that runs it on every node.
func kubeProxy(cfg *config.Config) ([]runtime.Object, error) {
	cm, err := kubeProxyConfigMap(cfg)
	if err != nil {
		return nil, err
	}
	labels := appLabels(nameProxy, componentNetworking)
	return []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: objectMeta(nameProxy, Namespace, labels)},
		&rbacv1.ClusterRoleBinding{
			// kubeadm's name, so kubeadm finds the binding it expects.
			ObjectMeta: objectMeta("kubeadm:node-proxier", "", labels),
			RoleRef:    clusterRole("system:node-proxier"),
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameProxy, Namespace: Namespace}},
		},
		cm,
		kubeProxyDaemonSet(cfg),
	}, nil
}

// kubeProxyConfigMap holds kube-proxy's KubeProxyConfiguration and a kubeconfig that
// authenticates with the pod's service-account token, as kubeadm's does, and reaches the
// API through the pod's own api-proxy (ProxyAPIProxyServer). Fields left empty take
// kube-proxy's own defaults.
func kubeProxyConfigMap(cfg *config.Config) (*corev1.ConfigMap, error) {
	proxyCfg := kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:         metav1.TypeMeta{APIVersion: kubeproxyv1alpha1.SchemeGroupVersion.String(), Kind: "KubeProxyConfiguration"},
		BindAddress:      "0.0.0.0",
		ClientConnection: componentbaseconfigv1alpha1.ClientConnectionConfiguration{Kubeconfig: proxyConfigDir + "/" + ProxyKubeconfigKey},
		ClusterCIDR:      cfg.Cluster.Networking.PodSubnet,
		Mode:             kubeproxyv1alpha1.ProxyMode(cfg.Cluster.Proxy.Mode),
		// 0 leaves nf_conntrack_max as the host has it: kube-proxy must not try to
		// raise it, which fails where /proc/sys is read-only (nodes in containers).
		Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{MaxPerCore: ptr.To[int32](0)},
	}
	configYAML, err := yaml.Marshal(&proxyCfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the KubeProxyConfiguration: %w", err)
	}
	kubeconfigYAML, err := kubeconfig.ForServiceAccount(ProxyAPIProxyServer(),
		serviceAccountDir+"/ca.crt", serviceAccountDir+"/token")
	if err != nil {
		return nil, fmt.Errorf("making kube-proxy's kubeconfig: %w", err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: objectMeta(nameProxy, Namespace, appLabels(nameProxy, componentNetworking)),
		Data: map[string]string{
			ProxyConfigKey:     string(configYAML),
			ProxyKubeconfigKey: string(kubeconfigYAML),
		},
	}, nil
}

func kubeProxyDaemonSet(cfg *config.Config) *appsv1.DaemonSet {
	selector := map[string]string{labelLegacyK8sApp: nameProxy}
	labels := appLabels(nameProxy, componentNetworking)
	labels[LabelManagedBy] = ManagedBy
	labels[labelLegacyK8sApp] = nameProxy

	lockVol, lockMount := hostPathVolume("xtables-lock", "/run/xtables.lock", corev1.HostPathFileOrCreate, false)
	// OrCreate: a kernel with everything built in may have no /lib/modules at all, and
	// kube-proxy must run there too.
	modVol, modMount := hostPathVolume("lib-modules", "/lib/modules", corev1.HostPathDirectoryOrCreate, true)
	cfgVol := corev1.Volume{Name: nameProxy, VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: nameProxy}},
	}}
	cfgMount := corev1.VolumeMount{Name: nameProxy, MountPath: proxyConfigDir, ReadOnly: true}

	stateVol, stateMount := hostPathVolume("api-proxy-state", proxyAPIProxyStateDir, corev1.HostPathDirectoryOrCreate, false)
	// The pod's own API load balancer, a sidecar that starts before kube-proxy: the node's
	// static api-proxy exists only where selfkube join wrote it, and kube-proxy must keep
	// its API on every node (a kubeadm-joined one too) when a control-plane node dies.
	apiProxy := apiProxyContainer(cfg, ProxyAPIProxyPort, proxyConfigDir+"/"+ProxyKubeconfigKey, stateMount,
		[]string{cfg.Cluster.ControlPlaneEndpoint}, cfgMount)
	apiProxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	apiProxy.Resources = requests(10, 16)
	c := corev1.Container{
		Name:            nameProxy,
		Image:           cfg.Cluster.Image(config.ImageProxy),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{
			nameProxy,
			"--config=" + proxyConfigDir + "/" + ProxyConfigKey,
			"--hostname-override=$(NODE_NAME)",
		},
		Env:             []corev1.EnvVar{fieldEnv("NODE_NAME", "spec.nodeName")},
		SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		VolumeMounts:    []corev1.VolumeMount{cfgMount, lockMount, modMount},
		// Ready once the Service rules are in: init starts CoreDNS only then (a
		// connection to the kubernetes Service begun before the rules exist stays
		// un-NATed in conntrack and hangs until the client's dial timeout).
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromInt32(proxyHealthzPort),
			}},
			PeriodSeconds: 1,
		},
	}
	return &appsv1.DaemonSet{
		ObjectMeta: objectMeta(nameProxy, Namespace, appLabels(nameProxy, componentNetworking)),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					InitContainers:     []corev1.Container{apiProxy},
					Containers:         []corev1.Container{c},
					HostNetwork:        true,
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					PriorityClassName:  priorityNodeCritical,
					ServiceAccountName: nameProxy,
					// kube-proxy runs on every node whatever its taints.
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Volumes:     []corev1.Volume{cfgVol, lockVol, modVol, stateVol},
				},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{
					MaxUnavailable: ptr.To(intstr.FromInt32(1)),
				},
			},
		},
	}
}

func clusterRole(name string) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
}
