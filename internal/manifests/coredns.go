package manifests

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/node"
)

const (
	componentDNS = "dns"
	// DNSServiceName is the cluster DNS Service, named as every cluster names it.
	DNSServiceName   = "kube-dns"
	coreDNSRole      = "system:coredns"
	coreDNSConfigDir = "/etc/coredns"
	coreDNSReplicas  = 2
	coreDNSHealth    = 8080
	coreDNSReady     = 8181
	coreDNSMetrics   = 9153
)

// coreDNSSelector selects the CoreDNS pods (the kube-dns Service's and the
// Deployment's selector, kubeadm's label).
var coreDNSSelector = map[string]string{labelLegacyK8sApp: DNSServiceName}

// corefile is CoreDNS's configuration: the cluster zone from the API, everything else
// forwarded to the node's resolvers.
func corefile(domain string) string {
	lines := []string{
		".:53 {",
		"    errors",
		"    health {",
		"        lameduck 5s",
		"    }",
		"    ready",
		"    kubernetes " + domain + " in-addr.arpa ip6.arpa {",
		"        pods insecure",
		"        fallthrough in-addr.arpa ip6.arpa",
		"        ttl 30",
		"    }",
		fmt.Sprintf("    prometheus :%d", coreDNSMetrics),
		"    forward . /etc/resolv.conf {",
		"        max_concurrent 1000",
		"    }",
		"    cache 30",
		"    loop",
		"    reload",
		"    loadbalance",
		"}",
	}
	return strings.Join(lines, "\n") + "\n"
}

// coreDNS builds the cluster DNS: ServiceAccount, least-privilege ClusterRole and its
// binding, the Corefile ConfigMap, the Deployment and the kube-dns Service on the 10th
// address of the service subnet.
func coreDNS(cfg *config.Config) ([]runtime.Object, error) {
	ip, err := cfg.Cluster.Networking.DNSServiceIP()
	if err != nil {
		return nil, fmt.Errorf("choosing the cluster DNS address: %w", err)
	}
	labels := appLabels(nameCoreDNS, componentDNS)
	selector := coreDNSSelector

	role := &rbacv1.ClusterRole{
		ObjectMeta: objectMeta(coreDNSRole, "", labels),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{discoveryv1.GroupName}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: objectMeta(coreDNSRole, "", labels),
		RoleRef:    clusterRole(coreDNSRole),
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: nameCoreDNS, Namespace: Namespace}},
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: objectMeta(nameCoreDNS, Namespace, labels),
		Data:       map[string]string{"Corefile": corefile(cfg.Cluster.Networking.DNSDomain)},
	}

	svcLabels := appLabels(nameCoreDNS, componentDNS)
	svcLabels[labelLegacyK8sApp] = DNSServiceName
	svcLabels["kubernetes.io/name"] = "CoreDNS"
	svc := &corev1.Service{
		ObjectMeta: objectMeta(DNSServiceName, Namespace, svcLabels),
		Spec: corev1.ServiceSpec{
			Selector:  selector,
			ClusterIP: ip.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: coreDNSMetrics, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(coreDNSMetrics)},
			},
		},
	}

	return []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: objectMeta(nameCoreDNS, Namespace, labels)},
		role, binding, cm,
		coreDNSDeployment(cfg, selector),
		svc,
	}, nil
}

func coreDNSDeployment(cfg *config.Config, selector map[string]string) *appsv1.Deployment {
	podLabels := appLabels(nameCoreDNS, componentDNS)
	podLabels[LabelManagedBy] = ManagedBy
	podLabels[labelLegacyK8sApp] = DNSServiceName

	c := corev1.Container{
		Name:            nameCoreDNS,
		Image:           cfg.Cluster.Image(config.ImageCoreDNS),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"-conf", coreDNSConfigDir + "/Corefile"},
		Ports: []corev1.ContainerPort{
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: coreDNSMetrics, Protocol: corev1.ProtocolTCP},
		},
		Resources: corev1.ResourceRequirements{
			Requests: requests(100, 70).Requests,
			Limits:   corev1.ResourceList{corev1.ResourceMemory: requests(0, 170).Requests[corev1.ResourceMemory]},
		},
		LivenessProbe:  probe("", coreDNSHealth, "/health", corev1.URISchemeHTTP, 10, 5),
		ReadinessProbe: probe("", coreDNSReady, "/ready", corev1.URISchemeHTTP, 1, 3),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_BIND_SERVICE"},
				Drop: []corev1.Capability{"ALL"},
			},
			ReadOnlyRootFilesystem: ptr.To(true),
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: coreDNSConfigDir, ReadOnly: true}},
	}
	c.LivenessProbe.InitialDelaySeconds = 60
	c.LivenessProbe.TimeoutSeconds = 5
	c.ReadinessProbe.TimeoutSeconds = 1

	return &appsv1.Deployment{
		ObjectMeta: objectMeta(nameCoreDNS, Namespace, appLabels(nameCoreDNS, componentDNS)),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](coreDNSReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					Containers:         []corev1.Container{c},
					DNSPolicy:          corev1.DNSDefault,
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					PriorityClassName:  priorityClusterCritical,
					ServiceAccountName: nameCoreDNS,
					Tolerations: []corev1.Toleration{
						{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
						{Key: node.TaintControlPlane, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
					},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
								TopologyKey:   corev1.LabelHostname,
							},
						}},
					}},
					Volumes: []corev1.Volume{{Name: "config-volume", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: nameCoreDNS},
							Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
						},
					}}},
				},
			},
		},
	}
}
