// Package manifests builds every Kubernetes object a selfkube cluster runs, as typed Go
// objects: the static pods that boot the control plane (bootstrap-manifests/) and the
// self-hosted objects that replace them (manifests/). Builders are pure functions of the
// configuration and, for Secrets and ConfigMaps that carry credentials, of the asset
// files; they do no I/O. Encode turns an object into deterministic YAML.
//
// The asset directory layout is the contract with the PKI and kubeconfig packages:
//
//	tls/       ca.crt ca.key apiserver.crt … sa.key sa.pub, tls/etcd/ca.crt …,
//	           and the apiserver's encryption-config.yaml (the key that encrypts
//	           Secrets in etcd) and audit-policy.yaml
//	auth/      admin.conf controller-manager.conf scheduler.conf …
//
// On a node the temporary static pods read tls/ and auth/ from BootstrapSecretsDir, and
// etcd reads tls/etcd/* from EtcdPKIDir. Self-hosted pods read the same files from
// Secrets, one per component, holding only what that component needs.
package manifests

import (
	"fmt"
	"net"
	"path"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/etcd"
)

const (
	// BootstrapSecretsDir is the host directory that holds a copy of the asset
	// directory's tls/ and auth/ for the temporary control plane.
	BootstrapSecretsDir = "/etc/kubernetes/bootstrap-secrets"
	// EtcdPKIDir is the host directory of etcd's certificates (tls/etcd/* of the assets).
	// Unlike BootstrapSecretsDir it stays after the pivot.
	EtcdPKIDir = "/etc/kubernetes/pki/etcd"
	// StateDir is selfkube's directory on every node (host.Layout's StateDir): the
	// asset directory init ran from, etcd's snapshots, the api-proxies' state.
	StateDir = "/var/lib/selfkube"
	// SecretsMountDir is where self-hosted control-plane pods mount their Secret.
	SecretsMountDir = "/etc/kubernetes/secrets"

	// Namespace of every control-plane object.
	Namespace = "kube-system"

	// AnnotationTemporary marks the static pods that the pivot removes.
	AnnotationTemporary = "selfkube.io/temporary"
	// APIServerSecret and ControllerManagerSecret are the Secrets of those components.
	APIServerSecret         = nameAPIServer
	ControllerManagerSecret = nameControllerManager

	// LabelManagedBy is on every object selfkube renders, with the value ManagedBy.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "selfkube"
	// LabelName names the component of a self-hosted pod ("kube-apiserver"). The static
	// pods of the temporary control plane and of etcd do not carry it, so it selects the
	// self-hosted pods only (ComponentSelector).
	LabelName      = "app.kubernetes.io/name"
	labelName      = LabelName
	labelComponent = "app.kubernetes.io/component"
)

// The control-plane components, by the name their pods, Secrets and leases carry.
const (
	APIServer         = nameAPIServer
	ControllerManager = nameControllerManager
	Scheduler         = nameScheduler
)

// ComponentSelector is the label selector of the self-hosted pods of component (one of
// the names above); "" selects every self-hosted component.
func ComponentSelector(component string) string {
	if component == "" {
		return LabelName
	}
	return LabelName + "=" + component
}

// The static-pod files in the kubelet's manifest directory: etcd's on every
// control-plane node, the others of init's temporary control plane.
const (
	EtcdStaticPod              = nameEtcd + ".yaml"
	APIServerStaticPod         = nameAPIServer + ".yaml"
	ControllerManagerStaticPod = nameControllerManager + ".yaml"
	SchedulerStaticPod         = nameScheduler + ".yaml"
)

// Ports a control-plane node serves on, besides the apiserver's (config.DefaultAPIServerPort)
// and etcd's (etcd.ClientPort, etcd.PeerPort).
const (
	KubeletPort           = 10250
	ControllerManagerPort = controllerManagerPort
	SchedulerPort         = schedulerPort
)

// Paths of the asset files, relative to the asset directory.
const (
	FileCACert                = "tls/ca.crt"
	FileCAKey                 = "tls/ca.key"
	FileAPIServerCert         = "tls/apiserver.crt"
	FileAPIServerKey          = "tls/apiserver.key"
	FileAPIServerKubeletCert  = "tls/apiserver-kubelet-client.crt"
	FileAPIServerKubeletKey   = "tls/apiserver-kubelet-client.key"
	FileFrontProxyCACert      = "tls/front-proxy-ca.crt"
	FileFrontProxyCAKey       = "tls/front-proxy-ca.key"
	FileFrontProxyClientCert  = "tls/front-proxy-client.crt"
	FileFrontProxyClientKey   = "tls/front-proxy-client.key"
	FileServiceAccountKey     = "tls/sa.key"
	FileServiceAccountPub     = "tls/sa.pub"
	FileAPIServerEtcdCert     = "tls/apiserver-etcd-client.crt"
	FileAPIServerEtcdKey      = "tls/apiserver-etcd-client.key"
	FileEtcdCACert            = "tls/etcd/ca.crt"
	FileEtcdCAKey             = "tls/etcd/ca.key"
	FileEtcdServerCert        = "tls/etcd/server.crt"
	FileEtcdServerKey         = "tls/etcd/server.key"
	FileEtcdPeerCert          = "tls/etcd/peer.crt"
	FileEtcdPeerKey           = "tls/etcd/peer.key"
	FileEtcdHealthcheckCert   = "tls/etcd/healthcheck-client.crt"
	FileEtcdHealthcheckKey    = "tls/etcd/healthcheck-client.key"
	FileAdminConf             = "auth/admin.conf"
	FileSuperAdminConf        = "auth/super-admin.conf"
	FileControllerManagerConf = "auth/controller-manager.conf"
	FileSchedulerConf         = "auth/scheduler.conf"
	FileKubeletConf           = "auth/kubelet.conf"
	// FileEncryptionConfig is the apiserver's EncryptionConfiguration (see
	// pki.EncryptionConfigFile): generated once, kept like a CA key.
	FileEncryptionConfig = "tls/encryption-config.yaml"
	// FileAuditPolicy is the apiserver's audit policy, rendered from the configuration.
	FileAuditPolicy = "tls/audit-policy.yaml"
)

const (
	bootstrapManifestsDir   = "bootstrap-manifests"
	selfHostedManifestsDir  = "manifests"
	apiServerPort           = config.DefaultAPIServerPort
	controllerManagerPort   = 10257
	schedulerPort           = 10259
	etcdClientPort          = etcd.ClientPort
	etcdPeerPort            = etcd.PeerPort
	etcdMetricsPort         = 2381
	priorityNodeCritical    = "system-node-critical"
	priorityClusterCritical = "system-cluster-critical"
	componentControlPlane   = "control-plane"

	nameAPIServer         = "kube-apiserver"
	nameControllerManager = "kube-controller-manager"
	nameScheduler         = "kube-scheduler"
	nameEtcd              = "etcd"
	nameProxy             = ProxyName
	nameCoreDNS           = "coredns"

	// Labels kubeadm-era tooling selects on (kubectl -l component=kube-apiserver).
	labelLegacyComponent = "component"
	labelLegacyTier      = "tier"
	labelLegacyK8sApp    = "k8s-app"
)

// Files maps asset-directory-relative paths ("tls/ca.crt", "auth/scheduler.conf") to
// their content. Secrets and the cluster-info ConfigMap are built from it.
type Files map[string][]byte

// need returns the content of an asset file, or an error naming it.
func (f Files) need(name, purpose string) ([]byte, error) {
	data, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("%s needs the asset file %s, which is missing: render the PKI and kubeconfigs first", purpose, name)
	}
	return data, nil
}

// Asset is one object and the asset-directory-relative path it is written to. The
// object has apiVersion and kind set, so it can be applied as it is.
type Asset struct {
	// Path such as "manifests/20-kube-apiserver-daemonset.yaml".
	Path   string
	Object runtime.Object
	// Addon marks what the control plane does not need to take over from the temporary
	// one (kube-proxy, CoreDNS): init applies it after the hand-over, so it does not
	// compete for the CPU while the self-hosted control plane starts.
	Addon bool
}

// objectMeta is the metadata every rendered object starts from.
func objectMeta(name, namespace string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{LabelManagedBy: ManagedBy}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: l}
}

// appLabels are the recommended labels of an application.
func appLabels(name, component string) map[string]string {
	return map[string]string{labelName: name, labelComponent: component}
}

// selfHostedAsset names the file of a self-hosted object so that sorting by name gives
// the apply order: the stage (a multiple of ten) groups a component's objects, and the
// kind adds a step within it: identities and roles, then bindings, then configuration
// and credentials, then Services, then workloads, then their disruption budgets.
func selfHostedAsset(stage int, obj runtime.Object) (Asset, error) {
	gvk, err := kindOf(obj)
	if err != nil {
		return Asset{}, err
	}
	meta, err := metaOf(obj)
	if err != nil {
		return Asset{}, err
	}
	step, ok := kindSteps[gvk.Kind]
	if !ok {
		return Asset{}, fmt.Errorf("no apply step for kind %s", gvk.Kind)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	name := strings.NewReplacer(":", "-", "/", "-").Replace(meta.GetName())
	file := fmt.Sprintf("%02d-%s-%s.yaml", stage+step, name, strings.ToLower(gvk.Kind))
	return Asset{Path: path.Join(selfHostedManifestsDir, file), Object: obj}, nil
}

var kindSteps = map[string]int{
	"CustomResourceDefinition": 0,
	"ServiceAccount":           0, "ClusterRole": 0, "Role": 0,
	"ClusterRoleBinding": 1, "RoleBinding": 1,
	"Secret": 2, "ConfigMap": 2,
	"Service":   3,
	"DaemonSet": 5, "Deployment": 5,
	"PodDisruptionBudget": 6,
}

// Apply stages of the self-hosted manifests, one per component.
const (
	stageRBAC              = 0
	stageAPIServer         = 10
	stageControllerManager = 20
	stageScheduler         = 30
	stageProxy             = 40
	stageDNS               = 50
	stageClusterInfo       = 60
	stageNetwork           = 70
	stageCheckpointer      = 80
	stageSteer             = 82
	stageController        = 90
)

// Workloads are the self-hosted control plane's DaemonSet and Deployments as rendered for
// cluster (kind set), by component name: what selfkube-controller's operator applies
// when the ControlPlane resource changes. etcdMembers are the addresses of the local
// etcd members (the control-plane nodes'), which every apiserver lists after its own
// node's member. They are SelfHosted's for a configuration with that cluster part, whose
// node is the one member.
func Workloads(cluster config.ClusterConfiguration, etcdMembers []string) (map[string]runtime.Object, error) {
	cfg := &config.Config{Cluster: cluster}
	// The workloads depend on the node only through its address family (the loopback
	// address of the local etcd), which is the service network's.
	cfg.Node.AdvertiseAddress = "127.0.0.1"
	if ip, _, err := net.ParseCIDR(strings.Split(cluster.Networking.ServiceSubnet, ",")[0]); err == nil && ip.To4() == nil {
		cfg.Node.AdvertiseAddress = "::1"
	}
	out := map[string]runtime.Object{
		nameAPIServer:         apiServerDaemonSet(cfg, etcdMembers),
		nameControllerManager: controllerManagerDeployment(cfg),
		nameScheduler:         schedulerDeployment(cfg),
		nameProxy:             kubeProxyDaemonSet(cfg),
		nameCoreDNS:           coreDNSDeployment(cfg, coreDNSSelector),
	}
	if cluster.Networking.Plugin == config.NetworkPluginSelfkube {
		out[nameNetwork] = podNetworkDaemonSet(cfg)
	}
	for name, obj := range out {
		gvk, err := kindOf(obj)
		if err != nil {
			return nil, fmt.Errorf("the %s workload: %w", name, err)
		}
		obj.GetObjectKind().SetGroupVersionKind(gvk)
	}
	return out, nil
}

// Agents renders selfkube's own in-cluster agents with their RBAC: the checkpointer (and
// etcd node agent), the apiserver steer and the controller (operator and approver), from
// the cluster configuration and a control-plane node's CRI socket, as init applies them.
// `selfkube recover` creates those that are missing.
func Agents(cluster config.ClusterConfiguration, criSocket string) []runtime.Object {
	cfg := &config.Config{Cluster: cluster}
	cfg.Node.CRISocket = criSocket
	var out []runtime.Object
	out = append(out, checkpointer(cfg)...)
	out = append(out, apiServerSteer(cfg)...)
	out = append(out, selfkubeController(cfg)...)
	for _, obj := range out {
		if gvk, err := kindOf(obj); err == nil {
			obj.GetObjectKind().SetGroupVersionKind(gvk)
		}
	}
	return out
}

// SelfHosted builds the self-hosted control plane and the cluster add-ons, each object
// with the path it is written to, in apply order. files must hold every certificate,
// key and kubeconfig the Secrets carry.
func SelfHosted(cfg *config.Config, files Files) ([]Asset, error) {
	type staged struct {
		stage int
		objs  []runtime.Object
	}
	var groups []staged
	add := func(stage int, objs ...runtime.Object) { groups = append(groups, staged{stage, objs}) }

	add(stageRBAC, rbac()...)
	add(stageRBAC, controlplane.CRD())

	for _, c := range []struct {
		stage    int
		name     string
		workload runtime.Object
		extra    []runtime.Object
	}{
		{stageAPIServer, nameAPIServer, apiServerDaemonSet(cfg, []string{cfg.Node.AdvertiseAddress}), nil},
		{stageControllerManager, nameControllerManager, controllerManagerDeployment(cfg),
			[]runtime.Object{disruptionBudget(nameControllerManager)}},
		{stageScheduler, nameScheduler, schedulerDeployment(cfg),
			[]runtime.Object{disruptionBudget(nameScheduler)}},
	} {
		secret, err := controlPlaneSecret(cfg, c.name, files)
		if err != nil {
			return nil, err
		}
		add(c.stage, append([]runtime.Object{secret, c.workload}, c.extra...)...)
	}

	proxy, err := kubeProxy(cfg)
	if err != nil {
		return nil, err
	}
	add(stageProxy, proxy...)

	dns, err := coreDNS(cfg)
	if err != nil {
		return nil, err
	}
	add(stageDNS, dns...)

	info, err := clusterInfo(cfg, files)
	if err != nil {
		return nil, err
	}
	add(stageClusterInfo, info...)

	published, err := clusterConfig(cfg)
	if err != nil {
		return nil, err
	}
	add(stageClusterInfo, published...)

	if cfg.Cluster.Networking.Plugin == config.NetworkPluginSelfkube {
		add(stageNetwork, podNetwork(cfg)...)
	}

	add(stageCheckpointer, checkpointer(cfg)...)
	add(stageSteer, apiServerSteer(cfg)...)
	add(stageController, selfkubeController(cfg)...)

	var assets []Asset
	seen := map[string]bool{}
	for _, g := range groups {
		for _, obj := range g.objs {
			a, err := selfHostedAsset(g.stage, obj)
			a.Addon = g.stage == stageProxy || g.stage == stageDNS
			if err != nil {
				return nil, err
			}
			if seen[a.Path] {
				return nil, fmt.Errorf("two self-hosted objects would be written to %s", a.Path)
			}
			seen[a.Path] = true
			assets = append(assets, a)
		}
	}
	sort.SliceStable(assets, func(i, j int) bool { return assets[i].Path < assets[j].Path })
	return assets, nil
}
