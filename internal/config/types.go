// Package config is selfkube's configuration API, version selfkube.io/v1alpha1.
//
// A configuration file holds up to two YAML documents: a ClusterConfiguration (what the
// whole cluster looks like) and a NodeConfiguration (what this machine is). Loading a file
// decodes it strictly (unknown fields are errors that name their path), fills in defaults,
// then validates the result into a field.ErrorList. Command-line flags only override.
package config

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// Group is the API group of selfkube's configuration kinds.
	Group = "selfkube.io"
	// Version is the only version of the configuration API so far.
	Version = "v1alpha1"
	// APIVersion is what configuration documents carry in apiVersion.
	APIVersion = Group + "/" + Version

	// KindCluster and KindNode are the two kinds a configuration file may hold.
	KindCluster = "ClusterConfiguration"
	KindNode    = "NodeConfiguration"
)

// ClusterConfiguration describes the cluster: versions, images, network, PKI and the
// control-plane components. Every field is optional; Default fills what is left out.
type ClusterConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// KubernetesVersion of the control plane, e.g. v1.36.3.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// EtcdVersion of the local etcd members, e.g. v3.6.6: the tag of their image is
	// 3.6.6-0 (the upstream registry's form) unless an image is set. Not used with an
	// external etcd.
	EtcdVersion string `json:"etcdVersion,omitempty"`
	// ImageRepository is the registry and path prefix of every component image.
	ImageRepository string `json:"imageRepository,omitempty"`
	// Images overrides the full reference of single component images.
	Images Images `json:"images,omitempty"`
	// ControlPlaneEndpoint (host:port) is the address every client uses to reach the API:
	// a load balancer or DNS name for HA clusters. Defaults to the first node's advertise
	// address and port 6443.
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint,omitempty"`
	// Networking of pods and services.
	Networking Networking `json:"networking,omitempty"`
	// APIServer settings.
	APIServer APIServer `json:"apiServer,omitempty"`
	// ControllerManager settings.
	ControllerManager Component `json:"controllerManager,omitempty"`
	// Scheduler settings.
	Scheduler Component `json:"scheduler,omitempty"`
	// Etcd is either local (a static pod on each control-plane node) or external.
	Etcd Etcd `json:"etcd,omitempty"`
	// Certificates sets how keys and certificates are made.
	Certificates Certificates `json:"certificates,omitempty"`
	// Proxy configures kube-proxy.
	Proxy Proxy `json:"proxy,omitempty"`
}

// Images holds per-component image overrides. An empty field means
// <imageRepository>/<component>:<default tag>.
type Images struct {
	APIServer         string `json:"apiServer,omitempty"`
	ControllerManager string `json:"controllerManager,omitempty"`
	Scheduler         string `json:"scheduler,omitempty"`
	Proxy             string `json:"proxy,omitempty"`
	CoreDNS           string `json:"coreDNS,omitempty"`
	Etcd              string `json:"etcd,omitempty"`
	Pause             string `json:"pause,omitempty"`
	// Selfkube is the image of selfkube's in-cluster agents (pod network, checkpointer).
	Selfkube string `json:"selfkube,omitempty"`
}

// Networking describes the cluster's address ranges.
type Networking struct {
	// PodSubnet is the range node pod CIDRs are allocated from.
	PodSubnet string `json:"podSubnet,omitempty"`
	// ServiceSubnet is the range of ClusterIP Services; its first address is the API's.
	ServiceSubnet string `json:"serviceSubnet,omitempty"`
	// DNSDomain is the cluster's DNS suffix.
	DNSDomain string `json:"dnsDomain,omitempty"`
	// Plugin is the pod network: "selfkube" (the built-in bridge agent) or "none" (bring
	// your own CNI DaemonSet).
	Plugin string `json:"plugin,omitempty"`
}

// Component holds the settings shared by the control-plane components.
type Component struct {
	// ExtraArgs are added to (or override) the component's command-line flags,
	// without the leading dashes: {"v": "2"}.
	ExtraArgs map[string]string `json:"extraArgs,omitempty"`
	// FeatureGates are merged into the component's --feature-gates (over selfkube's
	// own); with them set, extraArgs may not hold feature-gates too.
	FeatureGates map[string]bool `json:"featureGates,omitempty"`
	// Resources override the container's requests and limits, by resource name.
	Resources Resources `json:"resources,omitzero"`
}

// Resources are a container's requests and limits as quantities ("cpu": "250m",
// "memory": "512Mi"), overriding selfkube's defaults name by name.
type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// APIServer holds the kube-apiserver settings.
type APIServer struct {
	Component `json:",inline"`
	// CertSANs are extra names and addresses for the API serving certificate.
	CertSANs []string `json:"certSANs,omitempty"`
	// EncryptionAtRest encrypts Secrets in etcd with a key generated once into the asset
	// directory (tls/encryption-config.yaml) and carried by the apiserver's Secret.
	// Defaults to true.
	EncryptionAtRest *bool `json:"encryptionAtRest,omitempty"`
	// Audit configures the API audit log.
	Audit Audit `json:"audit,omitempty"`
}

// EncryptsSecrets reports whether Secrets are encrypted at rest (unset means yes).
func (a *APIServer) EncryptsSecrets() bool { return a.EncryptionAtRest == nil || *a.EncryptionAtRest }

// Audit configures kube-apiserver's audit log: a policy carried by the apiserver's
// Secret, and a log file in a directory of each control-plane host.
type Audit struct {
	// Enabled turns audit logging on. Defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
	// LogDir is the host directory of the log file (audit.log) and its rotated copies.
	LogDir string `json:"logDir,omitempty"`
	// MaxAge is how many days rotated log files are kept.
	MaxAge int32 `json:"maxAge,omitempty"`
	// MaxBackups is how many rotated log files are kept.
	MaxBackups int32 `json:"maxBackups,omitempty"`
	// MaxSizeMB is the size in megabytes at which the log file is rotated.
	MaxSizeMB int32 `json:"maxSizeMB,omitempty"`
	// Policy is the audit policy, an audit.k8s.io/v1 Policy written inline. Defaults to
	// DefaultAuditPolicy.
	Policy *AuditPolicy `json:"policy,omitempty"`
}

// On reports whether audit logging is on (unset means yes).
func (a *Audit) On() bool { return a.Enabled == nil || *a.Enabled }

// The audit.k8s.io/v1 Policy kind, as the apiserver reads it from --audit-policy-file.
const (
	AuditPolicyAPIVersion = "audit.k8s.io/v1"
	AuditPolicyKind       = "Policy"
)

// AuditLevel is how much of a request the audit log records.
type AuditLevel string

// Audit levels, from nothing to everything.
const (
	AuditLevelNone            AuditLevel = "None"
	AuditLevelMetadata        AuditLevel = "Metadata"
	AuditLevelRequest         AuditLevel = "Request"
	AuditLevelRequestResponse AuditLevel = "RequestResponse"
)

// AuditStage is a stage of request handling at which an audit event may be recorded.
type AuditStage string

// Audit stages.
const (
	AuditStageRequestReceived  AuditStage = "RequestReceived"
	AuditStageResponseStarted  AuditStage = "ResponseStarted"
	AuditStageResponseComplete AuditStage = "ResponseComplete"
	AuditStagePanic            AuditStage = "Panic"
)

// AuditPolicy mirrors the audit.k8s.io/v1 Policy (without metadata), so that a policy
// in the configuration is decoded strictly and checked before any apiserver reads it.
type AuditPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// Rules are matched in order; the first match sets the level of a request. A request
	// that no rule matches is not logged.
	Rules []AuditPolicyRule `json:"rules"`
	// OmitStages are stages never logged.
	OmitStages []AuditStage `json:"omitStages,omitempty"`
	// OmitManagedFields leaves managedFields out of logged request and response bodies.
	OmitManagedFields bool `json:"omitManagedFields,omitempty"`
}

// AuditPolicyRule maps requests to a level. Empty lists match everything.
type AuditPolicyRule struct {
	Level           AuditLevel            `json:"level"`
	Users           []string              `json:"users,omitempty"`
	UserGroups      []string              `json:"userGroups,omitempty"`
	Verbs           []string              `json:"verbs,omitempty"`
	Resources       []AuditGroupResources `json:"resources,omitempty"`
	Namespaces      []string              `json:"namespaces,omitempty"`
	NonResourceURLs []string              `json:"nonResourceURLs,omitempty"`
	OmitStages      []AuditStage          `json:"omitStages,omitempty"`
	// OmitManagedFields overrides the policy's setting for this rule.
	OmitManagedFields *bool `json:"omitManagedFields,omitempty"`
}

// AuditGroupResources selects resources of one API group ("" is the core group).
type AuditGroupResources struct {
	Group         string   `json:"group,omitempty"`
	Resources     []string `json:"resources,omitempty"`
	ResourceNames []string `json:"resourceNames,omitempty"`
}

// Etcd selects local or external etcd; exactly one may be set.
type Etcd struct {
	Local    *LocalEtcd    `json:"local,omitempty"`
	External *ExternalEtcd `json:"external,omitempty"`
}

// LocalEtcd is etcd run by selfkube as a static pod on each control-plane node.
type LocalEtcd struct {
	// DataDir on the host.
	DataDir string `json:"dataDir,omitempty"`
	// Image overrides the etcd image.
	Image string `json:"image,omitempty"`
	// ExtraArgs are added to (or override) etcd's flags.
	ExtraArgs map[string]string `json:"extraArgs,omitempty"`
	// Snapshots are the scheduled snapshots the node agent of every control-plane node
	// takes of its member (/var/lib/selfkube/etcd-snapshots, files 0600; the newest is
	// named in the ControlPlane's status.etcd.scheduled). selfkube recover
	// --from-snapshot FILE restores one.
	Snapshots *EtcdSnapshots `json:"snapshots,omitempty"`
}

// EtcdSnapshots schedules etcd snapshots.
type EtcdSnapshots struct {
	// Interval between two snapshots of a member (at least 1m; 0 turns them off).
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Keep is how many scheduled snapshots each node keeps (the oldest go first).
	Keep int32 `json:"keep,omitempty"`
}

// ExternalEtcd is an etcd cluster selfkube does not manage.
type ExternalEtcd struct {
	// Endpoints are https URLs of the etcd members.
	Endpoints []string `json:"endpoints"`
	// CAFile, CertFile and KeyFile are the client TLS files on the control-plane hosts.
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Key algorithms for every private key selfkube makes.
const (
	KeyAlgorithmECDSAP256 = "ECDSA-P256"
	KeyAlgorithmRSA2048   = "RSA-2048"
	KeyAlgorithmRSA3072   = "RSA-3072"
	KeyAlgorithmRSA4096   = "RSA-4096"
)

// Certificates sets how the PKI is made.
type Certificates struct {
	// KeyAlgorithm of every private key: ECDSA-P256, RSA-2048, RSA-3072 or RSA-4096.
	KeyAlgorithm string `json:"keyAlgorithm,omitempty"`
	// CAValidity is how long a new CA certificate is valid.
	CAValidity *metav1.Duration `json:"caValidity,omitempty"`
	// Validity is how long a new leaf certificate is valid.
	Validity *metav1.Duration `json:"validity,omitempty"`
	// RenewBefore is the renewal window: the node agents renew a control-plane
	// certificate once less than this is left of it.
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// RenewalWindow is RenewBefore, or its default where it is not set (a configuration
// published before it existed): 30 days, or 30/365 of a shorter validity.
func (c Certificates) RenewalWindow() time.Duration {
	if c.RenewBefore != nil {
		return c.RenewBefore.Duration
	}
	validity := DefaultLeafValidity
	if c.Validity != nil {
		validity = c.Validity.Duration
	}
	return min(DefaultRenewBefore, validity*30/365)
}

// Proxy configures kube-proxy.
type Proxy struct {
	// Mode is iptables, ipvs or nftables.
	Mode string `json:"mode,omitempty"`
}

// NodeConfiguration describes the machine selfkube runs on.
type NodeConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// Name of the Node object; defaults to the host name.
	Name string `json:"name,omitempty"`
	// AdvertiseAddress is the address the API server on this node advertises. Defaults
	// to the controlPlaneEndpoint host when that is an IP, else the host's default-route address.
	AdvertiseAddress string `json:"advertiseAddress,omitempty"`
	// NodeIP is the kubelet's --node-ip; defaults to the advertise address.
	NodeIP string `json:"nodeIP,omitempty"`
	// CRISocket is the container runtime endpoint.
	CRISocket string `json:"criSocket,omitempty"`
	// Labels are added to the Node object.
	Labels map[string]string `json:"labels,omitempty"`
	// Taints are put on the Node object. A control-plane node gets
	// node-role.kubernetes.io/control-plane:NoSchedule when this is nil; an empty list means none.
	Taints []corev1.Taint `json:"taints,omitempty"`
	// Kubelet settings of this node.
	Kubelet Kubelet `json:"kubelet,omitempty"`
}

// Kubelet holds the kubelet settings selfkube writes into the kubelet's configuration.
type Kubelet struct {
	// CgroupDriver is cgroupfs or systemd; it must match the container runtime's.
	CgroupDriver string `json:"cgroupDriver,omitempty"`
}

// Config is a loaded, defaulted and validated configuration file.
type Config struct {
	Cluster ClusterConfiguration
	Node    NodeConfiguration
}
