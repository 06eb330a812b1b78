package manifests

import (
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/selfkube/selfkube/internal/config"
)

const (
	nameAPIProxy = "selfkube-api-proxy"
	// APIProxyPort is the port of the node-local API load balancer on 127.0.0.1.
	APIProxyPort = 6444
	// APIProxyManifest is the file name of its static pod.
	APIProxyManifest = nameAPIProxy + ".yaml"
	apiProxyRole     = "selfkube:api-proxy"
	// ProxyAPIProxyPort is the port, on 127.0.0.1, of the API load balancer in every
	// kube-proxy pod; kube-proxy reaches the API through it.
	ProxyAPIProxyPort     = 6445
	proxyAPIProxyStateDir = "/var/lib/selfkube/kube-proxy-api-proxy"
)

// ProxyAPIProxyServer is the URL kube-proxy reaches the API at.
func ProxyAPIProxyServer() string { return "https://" + loopbackAddr(ProxyAPIProxyPort) }

// APIProxyServer is the URL a joined node's kubelet reaches the API at.
func APIProxyServer() string { return "https://" + loopbackAddr(APIProxyPort) }

func loopbackAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// apiProxyContainer runs `selfkube api-proxy` on 127.0.0.1:port: it starts with
// backends, reads the apiserver endpoints with kubeconfig and remembers them in
// stateMount's directory. mounts must hold kubeconfig and its credentials.
func apiProxyContainer(cfg *config.Config, port int, kubeconfig string, stateMount corev1.VolumeMount, backends []string, mounts ...corev1.VolumeMount) corev1.Container {
	cmd := []string{"/usr/local/bin/selfkube", "api-proxy",
		"--listen=" + loopbackAddr(port),
		"--kubeconfig=" + kubeconfig,
		"--state-file=" + stateMount.MountPath + "/backends.json"}
	for _, b := range backends {
		cmd = append(cmd, "--backend="+b)
	}
	return corev1.Container{
		Name:            "api-proxy",
		Image:           cfg.Cluster.Image(config.ImageSelfkube),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         cmd,
		VolumeMounts:    append(mounts, stateMount),
	}
}

// APIProxyPod is the static pod of the node-local API load balancer (package apiproxy)
// of a joined node: it starts with backends and learns the others from the kubernetes
// Service's endpoints, read with the kubelet's credentials. A static pod, because the
// kubelet needs it to reach the API at all.
func APIProxyPod(cfg *config.Config, backends []string) *corev1.Pod {
	// The directory, not the file: the kubelet writes kubelet.conf only once bootstrapped.
	kubeconfigVol, kubeconfigMount := hostPathVolume("kubernetes", "/etc/kubernetes", corev1.HostPathDirectory, true)
	pkiVol, pkiMount := hostPathVolume("kubelet-pki", "/var/lib/kubelet/pki", corev1.HostPathDirectoryOrCreate, true)
	stateVol, stateMount := hostPathVolume("state", "/var/lib/selfkube/api-proxy", corev1.HostPathDirectoryOrCreate, false)
	c := apiProxyContainer(cfg, APIProxyPort, "/etc/kubernetes/kubelet.conf", stateMount, backends, kubeconfigMount, pkiMount)
	c.Resources = requests(20, 16)
	pod := staticPod(nameAPIProxy, false, c, []corev1.Volume{kubeconfigVol, pkiVol, stateVol})
	pod.Spec.PriorityClassName = priorityNodeCritical
	return pod
}

// apiProxyRBAC lets nodes and kube-proxy (whose pods run an api-proxy with its
// credentials) read the endpoints of the kubernetes Service (the apiservers), and
// nothing else there.
func apiProxyRBAC() []runtime.Object {
	labels := appLabels(nameAPIProxy, componentAccess)
	return []runtime.Object{
		&rbacv1.Role{
			ObjectMeta: objectMeta(apiProxyRole, "default", labels),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"endpoints"},
				ResourceNames: []string{"kubernetes"}, Verbs: []string{"get"}}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(apiProxyRole, "default", labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: apiProxyRole},
			Subjects: []rbacv1.Subject{
				{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"},
				{Kind: rbacv1.ServiceAccountKind, Name: nameProxy, Namespace: Namespace},
			},
		},
	}
}
