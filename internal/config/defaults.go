package config

import (
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults of the configuration API.
const (
	DefaultKubernetesVersion = "v1.36.3"
	DefaultImageRepository   = "registry.k8s.io"
	DefaultAPIServerPort     = 6443
	DefaultPodSubnet         = "10.244.0.0/16"
	DefaultServiceSubnet     = "10.96.0.0/12"
	DefaultDNSDomain         = "cluster.local"
	DefaultEtcdDataDir       = "/var/lib/etcd"
	DefaultCRISocket         = "unix:///run/containerd/containerd.sock"
	DefaultProxyMode         = "iptables"
	DefaultCgroupDriver      = "cgroupfs"

	NetworkPluginSelfkube = "selfkube"
	NetworkPluginNone     = "none"

	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour

	// Tags of the images that are not versioned with Kubernetes.
	EtcdImageTag    = "3.6.6-0"
	CoreDNSImageTag = "v1.15.0"
	PauseImageTag   = "3.10.2"
)

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
	if c.Certificates.KeyAlgorithm == "" {
		c.Certificates.KeyAlgorithm = KeyAlgorithmECDSAP256
	}
	if c.Certificates.CAValidity == nil {
		c.Certificates.CAValidity = &metav1.Duration{Duration: DefaultCAValidity}
	}
	if c.Certificates.Validity == nil {
		c.Certificates.Validity = &metav1.Duration{Duration: DefaultLeafValidity}
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
		override, tag = c.Images.CoreDNS, CoreDNSImageTag
		if repo == DefaultImageRepository {
			// The upstream registry keeps CoreDNS one level deeper.
			name = "coredns/coredns"
		}
	case ImageEtcd:
		override, tag = c.Images.Etcd, EtcdImageTag
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
