package config

import (
	"cmp"
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/utils/ptr"
)

// Defaults of the configuration API.
const (
	DefaultKubernetesVersion = "v1.36.3"
	DefaultEtcdVersion       = "v3.6.6"
	// etcdVersionBeforeVersions is the etcd release selfkube pinned before the
	// configuration had etcdVersion: frozen, whatever the default becomes.
	etcdVersionBeforeVersions = "v3.6.6"
	DefaultImageRepository    = "registry.k8s.io"
	DefaultAPIServerPort      = 6443
	DefaultPodSubnet          = "10.244.0.0/16"
	DefaultServiceSubnet      = "10.96.0.0/12"
	DefaultDNSDomain          = "cluster.local"
	DefaultEtcdDataDir        = "/var/lib/etcd"
	// DefaultEtcdSnapshotInterval and DefaultEtcdSnapshotKeep schedule etcd snapshots as
	// k3s and RKE2 do: twice a day, the newest 5 kept.
	DefaultEtcdSnapshotInterval = 12 * time.Hour
	DefaultEtcdSnapshotKeep     = 5
	DefaultCRISocket            = "unix:///run/containerd/containerd.sock"
	DefaultProxyMode            = "iptables"
	DefaultCgroupDriver         = "cgroupfs"

	NetworkPluginSelfkube = "selfkube"
	NetworkPluginNone     = "none"

	// Audit log defaults: a week of files of up to 100 MB, at most ten of them.
	DefaultAuditLogDir     = "/var/log/kubernetes/audit"
	DefaultAuditMaxAge     = 7
	DefaultAuditMaxBackups = 10
	DefaultAuditMaxSizeMB  = 100
	// AuditLogFile is the name of the audit log in audit.logDir.
	AuditLogFile = "audit.log"

	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
	DefaultRenewBefore  = 30 * 24 * time.Hour

	// Tags of the images that are not versioned with Kubernetes (etcd's follows
	// etcdVersion: EtcdImageTag; CoreDNS's the Kubernetes release: CoreDNSTag).
	// CoreDNSImageTag is CoreDNS for the pinned release and any newer one.
	CoreDNSImageTag = "v1.15.0"
	PauseImageTag   = "3.10.2"
)

// coreDNSByMinor is the CoreDNS release each Kubernetes minor runs: kubeadm's for the
// releases before selfkube's pinned one (so that an upgrade from one of them starts from
// what a kubeadm cluster of that release runs), CoreDNSImageTag from the pinned one on.
// An upgrade of Kubernetes changes CoreDNS with it, after kube-proxy.
var coreDNSByMinor = map[uint]string{33: "v1.12.0", 34: "v1.12.1", 35: "v1.13.1", 36: "v1.15.0"}

// CoreDNSTag is the CoreDNS image tag of Kubernetes release version (v1.35.4):
// coreDNSByMinor's entry for its minor; CoreDNSImageTag for a release the table does
// not know (a newer one, or a version that does not parse, which validation refuses).
func CoreDNSTag(version string) string {
	v, err := utilversion.ParseGeneric(version)
	if err != nil || v.Major() != 1 {
		return CoreDNSImageTag
	}
	if tag, ok := coreDNSByMinor[v.Minor()]; ok {
		return tag
	}
	return CoreDNSImageTag
}

// SelfkubeImageTag is the tag of the selfkube agent image; the build sets it to the
// selfkube version (see internal/version).
var SelfkubeImageTag = "dev"

// Host holds what defaulting needs to know about the machine. The loader fills it in;
// defaulting itself does no I/O.
type Host struct {
	// Hostname becomes the node name when none is configured.
	Hostname string
	// DefaultAddress is the address of the interface holding the default route.
	DefaultAddress string
}

// Default fills every unset field of cfg. It never overrides a set field.
func Default(cfg *Config, host Host) {
	c, n := &cfg.Cluster, &cfg.Node
	c.APIVersion, c.Kind = APIVersion, KindCluster
	n.APIVersion, n.Kind = APIVersion, KindNode

	if c.KubernetesVersion == "" {
		c.KubernetesVersion = DefaultKubernetesVersion
	}
	if c.EtcdVersion == "" && c.Etcd.External == nil {
		c.EtcdVersion = DefaultEtcdVersion
	}
	if c.ImageRepository == "" {
		c.ImageRepository = DefaultImageRepository
	}
	if c.Networking.PodSubnet == "" {
		c.Networking.PodSubnet = DefaultPodSubnet
	}
	if c.Networking.ServiceSubnet == "" {
		c.Networking.ServiceSubnet = DefaultServiceSubnet
	}
	if c.Networking.DNSDomain == "" {
		c.Networking.DNSDomain = DefaultDNSDomain
	}
	if c.Networking.Plugin == "" {
		c.Networking.Plugin = NetworkPluginSelfkube
	}
	if c.Etcd.Local == nil && c.Etcd.External == nil {
		c.Etcd.Local = &LocalEtcd{}
	}
	if c.Etcd.Local != nil && c.Etcd.Local.DataDir == "" {
		c.Etcd.Local.DataDir = DefaultEtcdDataDir
	}
	if l := c.Etcd.Local; l != nil {
		if l.Snapshots == nil {
			l.Snapshots = &EtcdSnapshots{}
		}
		if l.Snapshots.Interval == nil {
			l.Snapshots.Interval = &metav1.Duration{Duration: DefaultEtcdSnapshotInterval}
		}
		if l.Snapshots.Keep == 0 {
			l.Snapshots.Keep = DefaultEtcdSnapshotKeep
		}
	}
	if c.APIServer.EncryptionAtRest == nil {
		c.APIServer.EncryptionAtRest = ptr.To(true)
	}
	defaultAudit(&c.APIServer.Audit)
	if c.Certificates.KeyAlgorithm == "" {
		c.Certificates.KeyAlgorithm = KeyAlgorithmECDSAP256
	}
	if c.Certificates.CAValidity == nil {
		c.Certificates.CAValidity = &metav1.Duration{Duration: DefaultCAValidity}
	}
	if c.Certificates.Validity == nil {
		c.Certificates.Validity = &metav1.Duration{Duration: DefaultLeafValidity}
	}
	if c.Certificates.RenewBefore == nil {
		c.Certificates.RenewBefore = &metav1.Duration{Duration: c.Certificates.RenewalWindow()}
	}
	if c.Proxy.Mode == "" {
		c.Proxy.Mode = DefaultProxyMode
	}

	if n.Name == "" {
		n.Name = strings.ToLower(host.Hostname)
	}
	if n.AdvertiseAddress == "" {
		if h, _, err := net.SplitHostPort(c.ControlPlaneEndpoint); err == nil && net.ParseIP(h) != nil {
			n.AdvertiseAddress = h
		} else {
			n.AdvertiseAddress = host.DefaultAddress
		}
	}
	if n.NodeIP == "" {
		n.NodeIP = n.AdvertiseAddress
	}
	if n.Kubelet.CgroupDriver == "" {
		n.Kubelet.CgroupDriver = DefaultCgroupDriver
	}
	if n.CRISocket == "" {
		n.CRISocket = DefaultCRISocket
	}
	if c.ControlPlaneEndpoint == "" && n.AdvertiseAddress != "" {
		c.ControlPlaneEndpoint = net.JoinHostPort(n.AdvertiseAddress, strconv.Itoa(DefaultAPIServerPort))
	}
}

func defaultAudit(a *Audit) {
	if a.Enabled == nil {
		a.Enabled = ptr.To(true)
	}
	if a.LogDir == "" {
		a.LogDir = DefaultAuditLogDir
	}
	if a.MaxAge == 0 {
		a.MaxAge = DefaultAuditMaxAge
	}
	if a.MaxBackups == 0 {
		a.MaxBackups = DefaultAuditMaxBackups
	}
	if a.MaxSizeMB == 0 {
		a.MaxSizeMB = DefaultAuditMaxSizeMB
	}
	switch {
	case a.Policy == nil:
		a.Policy = DefaultAuditPolicy()
	case a.Policy.APIVersion == "" && a.Policy.Kind == "":
		a.Policy.APIVersion, a.Policy.Kind = AuditPolicyAPIVersion, AuditPolicyKind
	}
}

// DefaultAuditPolicy is the audit policy of a cluster whose configuration sets none.
// Every request is logged at Metadata level (who did what to which object, and the
// answer's code; never a body), except the high-volume, read-only or routine noise:
// health checks, reading events, and the lease renewals of the control plane and the
// kubelets. Secrets, ConfigMaps and tokens are matched first, so that no rule can log
// them with their content (Request or RequestResponse would write Secret data and
// tokens to the log). Each request is logged once it is answered, not also when it
// arrives.
func DefaultAuditPolicy() *AuditPolicy {
	reads := []string{"get", "list", "watch"}
	renewals := []string{"get", "list", "watch", "update"}
	leases := []AuditGroupResources{{Group: "coordination.k8s.io", Resources: []string{"leases"}}}
	return &AuditPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: AuditPolicyAPIVersion, Kind: AuditPolicyKind},
		OmitStages: []AuditStage{AuditStageRequestReceived},
		Rules: []AuditPolicyRule{
			{Level: AuditLevelMetadata, Resources: []AuditGroupResources{
				{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
				{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
			}},
			// Probes of the apiservers, every second from kubelets, api-proxies and load
			// balancers.
			{Level: AuditLevelNone, NonResourceURLs: []string{"/healthz*", "/livez*", "/readyz*", "/version"}},
			{Level: AuditLevelNone, Verbs: reads, Resources: []AuditGroupResources{
				{Group: "", Resources: []string{"events"}},
				{Group: "events.k8s.io", Resources: []string{"events"}},
			}},
			// Leader election of the controller manager and scheduler and the apiservers'
			// identity leases: renewed every few seconds.
			{Level: AuditLevelNone, Users: []string{"system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"},
				Verbs: renewals, Namespaces: []string{"kube-system"}, Resources: leases},
			// Node heartbeats.
			{Level: AuditLevelNone, UserGroups: []string{"system:nodes"},
				Verbs: renewals, Namespaces: []string{"kube-node-lease"}, Resources: leases},
			{Level: AuditLevelMetadata},
		},
	}
}

// Image component names accepted by ClusterConfiguration.Image.
const (
	ImageAPIServer         = "kube-apiserver"
	ImageControllerManager = "kube-controller-manager"
	ImageScheduler         = "kube-scheduler"
	ImageProxy             = "kube-proxy"
	ImageCoreDNS           = "coredns"
	ImageEtcd              = "etcd"
	ImagePause             = "pause"
	ImageSelfkube          = "selfkube"
)

// Image returns the full reference of a component's image: the override when one is
// set, else <imageRepository>/<name>:<tag>. An unknown name returns "".
func (c *ClusterConfiguration) Image(name string) string {
	repo := c.ImageRepository
	override, tag := "", ""
	switch name {
	case ImageAPIServer:
		override, tag = c.Images.APIServer, c.KubernetesVersion
	case ImageControllerManager:
		override, tag = c.Images.ControllerManager, c.KubernetesVersion
	case ImageScheduler:
		override, tag = c.Images.Scheduler, c.KubernetesVersion
	case ImageProxy:
		override, tag = c.Images.Proxy, c.KubernetesVersion
	case ImageCoreDNS:
		override, tag = c.Images.CoreDNS, CoreDNSTag(c.KubernetesVersion)
		if repo == DefaultImageRepository {
			// The upstream registry keeps CoreDNS one level deeper.
			name = "coredns/coredns"
		}
	case ImageEtcd:
		// A configuration published before etcdVersion existed ran the release that was
		// pinned then (not whatever the default is now).
		override, tag = c.Images.Etcd, EtcdImageTag(cmp.Or(c.EtcdVersion, etcdVersionBeforeVersions))
		if c.Etcd.Local != nil && c.Etcd.Local.Image != "" {
			override = c.Etcd.Local.Image
		}
	case ImagePause:
		override, tag = c.Images.Pause, PauseImageTag
	case ImageSelfkube:
		override, tag = c.Images.Selfkube, SelfkubeImageTag
	default:
		return ""
	}
	if override != "" {
		return override
	}
	return repo + "/" + name + ":" + tag
}

// EndpointHost is the host part of ControlPlaneEndpoint.
func (c *ClusterConfiguration) EndpointHost() string {
	h, _, err := net.SplitHostPort(c.ControlPlaneEndpoint)
	if err != nil {
		return c.ControlPlaneEndpoint
	}
	return h
}

// EtcdImageTag is the image tag of an etcd release in the upstream registry's form:
// v3.6.6 → 3.6.6-0.
func EtcdImageTag(version string) string { return strings.TrimPrefix(version, "v") + "-0" }
