package bootstrap

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
)

// ClusterInfoRBACName names the Role and RoleBinding that let anonymous clients read
// cluster-info (the names kubeadm uses, so either tool converges on the same objects).
const ClusterInfoRBACName = "kubeadm:bootstrap-signer-clusterinfo"

// AnonymousUser is the user of unauthenticated requests.
const AnonymousUser = "system:anonymous"

// ClusterInfo is the public discovery document and the RBAC that exposes it.
type ClusterInfo struct {
	ConfigMap   *corev1.ConfigMap
	Role        *rbacv1.Role
	RoleBinding *rbacv1.RoleBinding
}

// NormalizeServer turns "host:port" or "https://host:port" into "https://host:port".
func NormalizeServer(server string) (string, error) {
	s := server
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("API server address %q: %w; give it as host:port or https://host:port", server, err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("API server address %q must use https; give it as host:port or https://host:port", server)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("API server address %q has no host; give it as host:port or https://host:port", server)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("API server address %q must be only a host and port; give it as host:port or https://host:port", server)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "443")
	}
	return "https://" + u.Host, nil
}

// ClusterInfoKubeconfig renders the kubeconfig stored in cluster-info: one cluster (named
// "", as kubeadm does) with the server and the CA data, and no credentials. The output is
// deterministic, so re-applying it does not make the bootstrapsigner re-sign.
func ClusterInfoKubeconfig(server string, caPEM []byte) ([]byte, error) {
	server, err := NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	if _, err := cert.ParseCertsPEM(caPEM); err != nil {
		return nil, fmt.Errorf("parsing the cluster CA certificate for cluster-info: %w; pass the PEM of the cluster CA (ca.crt)", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the cluster-info kubeconfig: %w", err)
	}
	return out, nil
}

// BuildClusterInfo returns the kube-public/cluster-info ConfigMap and its Role and
// RoleBinding for server and the CA bundle caPEM. It performs no I/O.
func BuildClusterInfo(server string, caPEM []byte) (*ClusterInfo, error) {
	kubeconfig, err := ClusterInfoKubeconfig(server, caPEM)
	if err != nil {
		return nil, err
	}
	return &ClusterInfo{
		ConfigMap: &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
			Data:       map[string]string{bootstrapapi.KubeConfigKey: string(kubeconfig)},
		},
		Role: &rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoRBACName, Namespace: metav1.NamespacePublic},
			Rules: []rbacv1.PolicyRule{{
				Verbs:         []string{"get"},
				APIGroups:     []string{""},
				Resources:     []string{"configmaps"},
				ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo},
			}},
		},
		RoleBinding: &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoRBACName, Namespace: metav1.NamespacePublic},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ClusterInfoRBACName},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: AnonymousUser}},
		},
	}, nil
}

// EnsureClusterInfo server-side applies (field manager "selfkube", forced) the
// cluster-info ConfigMap and its Role and RoleBinding. Running it again with the same
// input changes nothing. It owns only the kubeconfig key of the ConfigMap, so the
// jws-kubeconfig-<id> signatures that the controller-manager's bootstrapsigner adds stay.
func EnsureClusterInfo(ctx context.Context, client kubernetes.Interface, server string, caPEM []byte) error {
	info, err := BuildClusterInfo(server, caPEM)
	if err != nil {
		return err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	ns := metav1.NamespacePublic
	next := "check the connection to the API server and that the client may apply ConfigMaps, Roles and RoleBindings in kube-public"

	cm := corev1ac.ConfigMap(info.ConfigMap.Name, ns).WithData(info.ConfigMap.Data)
	if _, err := client.CoreV1().ConfigMaps(ns).Apply(ctx, cm, opts); err != nil {
		return fmt.Errorf("applying ConfigMap %s/%s: %w; %s", ns, info.ConfigMap.Name, err, next)
	}

	r := info.Role.Rules[0]
	role := rbacv1ac.Role(info.Role.Name, ns).WithRules(rbacv1ac.PolicyRule().
		WithVerbs(r.Verbs...).
		WithAPIGroups(r.APIGroups...).
		WithResources(r.Resources...).
		WithResourceNames(r.ResourceNames...))
	if _, err := client.RbacV1().Roles(ns).Apply(ctx, role, opts); err != nil {
		return fmt.Errorf("applying Role %s/%s: %w; %s", ns, info.Role.Name, err, next)
	}

	ref, sub := info.RoleBinding.RoleRef, info.RoleBinding.Subjects[0]
	binding := rbacv1ac.RoleBinding(info.RoleBinding.Name, ns).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(ref.APIGroup).WithKind(ref.Kind).WithName(ref.Name)).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup(sub.APIGroup).WithKind(sub.Kind).WithName(sub.Name))
	if _, err := client.RbacV1().RoleBindings(ns).Apply(ctx, binding, opts); err != nil {
		return fmt.Errorf("applying RoleBinding %s/%s: %w; %s", ns, info.RoleBinding.Name, err, next)
	}
	return nil
}
