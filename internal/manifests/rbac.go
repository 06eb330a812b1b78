package manifests

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/pki"
)

// Groups and names the RBAC objects use; they are kubeadm's, so a stock `kubeadm join`
// with a bootstrap token finds what it expects.
const (
	// AdminGroup is the group of admin.conf's client certificate, bound to cluster-admin.
	AdminGroup = "kubeadm:cluster-admins"
	// NodeBootstrapGroup is the group of bootstrap-token users.
	NodeBootstrapGroup = "system:bootstrappers:kubeadm:default-node-token"
	// ControlPlaneJoinGroup is the extra group of the tokens of control-plane join
	// commands: only they may read the control-plane certificate hand-off.
	ControlPlaneJoinGroup = "system:bootstrappers:selfkube:control-plane"
	componentAccess       = "access-control"
	// ClusterInfoRBACName names the Role and RoleBinding that let anonymous clients read
	// cluster-info.
	ClusterInfoRBACName = "kubeadm:bootstrap-signer-clusterinfo"
	// AnonymousUser is the user of unauthenticated requests.
	AnonymousUser = "system:anonymous"
	// ControlPlaneCertsSecret is the Secret of the control-plane certificate hand-off.
	ControlPlaneCertsSecret = "selfkube-control-plane-certs"
	controlPlaneCertsRole   = "selfkube:control-plane-certs"
)

// rbac binds the admin group and lets nodes join with a bootstrap token: a token user may
// create a CSR (which selfkube's approver decides on, see internal/approver), and a
// node's renewals of its own client certificate are approved automatically.
func rbac() []runtime.Object {
	return append(accessRBAC(), apiProxyRBAC()...)
}

func accessRBAC() []runtime.Object {
	labels := appLabels("rbac", componentAccess)
	group := func(name string) []rbacv1.Subject {
		return []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}}
	}
	binding := func(name, role, subjectGroup string) runtime.Object {
		return &rbacv1.ClusterRoleBinding{
			ObjectMeta: objectMeta(name, "", labels),
			RoleRef:    clusterRole(role),
			Subjects:   group(subjectGroup),
		}
	}
	return []runtime.Object{
		binding("kubeadm:cluster-admins", "cluster-admin", AdminGroup),
		binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", NodeBootstrapGroup),
		// No "nodeclient" auto-approval for bootstrap tokens (kubeadm binds one): it would
		// approve any node name, a control-plane node's too, whose kubelet reads the control
		// plane's Secrets. selfkube's approver (selfkube-controller) approves new names only.
		binding("kubeadm:node-autoapprove-certificate-rotation",
			"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"),
		// A joining node checks whether its name is taken before it registers.
		&rbacv1.ClusterRole{
			ObjectMeta: objectMeta("kubeadm:get-nodes", "", labels),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}},
		},
		binding("kubeadm:get-nodes", "kubeadm:get-nodes", NodeBootstrapGroup),
		// A joining control-plane node reads the encrypted hand-off of the CA keys with
		// its token (useless without the certificate key of its join command). Only
		// control-plane join tokens may: a worker's token never sees it.
		&rbacv1.Role{
			ObjectMeta: objectMeta(controlPlaneCertsRole, Namespace, labels),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"},
				ResourceNames: []string{ControlPlaneCertsSecret}, Verbs: []string{"get"}}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: objectMeta(controlPlaneCertsRole, Namespace, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controlPlaneCertsRole},
			Subjects:   group(ControlPlaneJoinGroup),
		},
		// The apiserver's client certificate for kubelets carries no group (least
		// privilege): this binding gives it what logs, exec and port-forward need.
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: objectMeta("selfkube:apiserver-kubelet-client", "", labels),
			RoleRef:    clusterRole(pki.KubeletAPIAdminClusterRole),
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: pki.APIServerKubeletClientUser}},
		},
	}
}

// clusterInfo is the cluster-info that init applies: ClusterInfo for the control-plane
// endpoint and the cluster CA.
func clusterInfo(cfg *config.Config, files Files) ([]runtime.Object, error) {
	ca, err := files.need(FileCACert, "the cluster-info ConfigMap")
	if err != nil {
		return nil, err
	}
	return ClusterInfo(kubeconfig.Server(cfg), ca)
}

// ClusterInfo is the public discovery document of token-based joins, and the RBAC that
// lets anonymous clients read it: kube-public/cluster-info holds a kubeconfig with the API
// server (host:port or https://host:port) and the CA bundle caPEM, and no credentials.
// The controller manager's bootstrapsigner adds the token signatures to it; the document
// is deterministic, so applying it again does not make the signer sign again. The objects
// have apiVersion and kind set, so they can be applied as they are.
func ClusterInfo(server string, caPEM []byte) ([]runtime.Object, error) {
	data, err := kubeconfig.ClusterOnly(server, caPEM)
	if err != nil {
		return nil, fmt.Errorf("making the cluster-info kubeconfig: %w", err)
	}
	labels := appLabels(bootstrapapi.ConfigMapClusterInfo, componentAccess)
	rbacKind := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: kind}
	}
	return []runtime.Object{
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: corev1.SchemeGroupVersion.String(), Kind: "ConfigMap"},
			ObjectMeta: objectMeta(bootstrapapi.ConfigMapClusterInfo, metav1.NamespacePublic, labels),
			Data:       map[string]string{bootstrapapi.KubeConfigKey: string(data)},
		},
		&rbacv1.Role{
			TypeMeta:   rbacKind("Role"),
			ObjectMeta: objectMeta(ClusterInfoRBACName, metav1.NamespacePublic, labels),
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"configmaps"},
				ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo}, Verbs: []string{"get"},
			}},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   rbacKind("RoleBinding"),
			ObjectMeta: objectMeta(ClusterInfoRBACName, metav1.NamespacePublic, labels),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ClusterInfoRBACName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: AnonymousUser}},
		},
	}, nil
}
