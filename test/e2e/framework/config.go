// Package framework is the real-node harness of the e2e suite: it turns this machine into
// several Kubernetes "machines" without virtual machines or Docker.
//
// A node is a network namespace with eth0 on a host bridge, a holder process that owns the
// node's private mount, UTS and cgroup namespaces, its own cgroup subtree in every cgroup v1
// hierarchy, per-node state directories bind-mounted over /etc/kubernetes, /var/lib/kubelet,
// /var/lib/containerd, /run and friends, and containerd and kubelet kept running by restart
// loops (the harness plays systemd). Disk state survives a reboot; /run does not.
//
// The harness re-executes its own binary for the parts that must run inside a node (the
// holder, the service supervisors, and the shim that joins the node's cgroups before
// entering its namespaces): every program that uses it calls RunAgentIfRequested first.
package framework

import (
	"fmt"
	"os"
	"path/filepath"
)

// Names shared by everything the harness creates on the host, so that Cleanup can find
// the leftovers of a killed run.
const (
	// BridgeName is the host bridge every node's eth0 is attached to.
	BridgeName = "br-selfkube"
	// BridgeIP is the host's address on the bridge and every node's default gateway.
	BridgeIP = "172.31.0.1"
	// bridgePrefixLen is the prefix length of the node network.
	bridgePrefixLen = 24
	// netnsPrefix prefixes the network namespace of every node (/run/netns/selfkube-NAME).
	netnsPrefix = "selfkube-"
	// vethPrefix prefixes the host side of every node's veth (interface names have 15 bytes).
	vethPrefix = "skv-"
	// cgroupParent is the cgroup, in every v1 hierarchy, that holds one child per node.
	cgroupParent = "selfkube-e2e"
	// maxNameLen keeps vethPrefix+name within the kernel's interface name limit.
	maxNameLen = 11

	// Pinned versions of the substrate (the cache layout contract of hack/build-components.sh).
	etcdVersion       = "v3.6.6"
	cniPluginsVersion = "v1.9.1"
	// DefaultKubeVersion is used when KUBE_VERSION is not set.
	DefaultKubeVersion = "v1.36.3"
)

// Config says where the harness finds the cached components and where it keeps node state.
type Config struct {
	// CacheDir is $SELFKUBE_CACHE: bin/ and images/ as written by `make components images`.
	CacheDir string
	// KubeVersion is $KUBE_VERSION: selects bin/kubernetes-<version>.
	KubeVersion string
	// WorkDir is $SELFKUBE_E2E_DIR: node state lives in WorkDir/nodes/NAME.
	WorkDir string
	// ArtifactsDir is $SELFKUBE_ARTIFACTS: node logs of failed tests are copied below it.
	ArtifactsDir string
}

// ConfigFromEnv reads the harness configuration from the environment, with the defaults of
// the substrate contract.
func ConfigFromEnv() Config {
	c := Config{
		CacheDir:     os.Getenv("SELFKUBE_CACHE"),
		KubeVersion:  os.Getenv("KUBE_VERSION"),
		WorkDir:      os.Getenv("SELFKUBE_E2E_DIR"),
		ArtifactsDir: os.Getenv("SELFKUBE_ARTIFACTS"),
	}
	if c.CacheDir == "" {
		c.CacheDir = "/var/cache/selfkube-test"
	}
	if c.KubeVersion == "" {
		c.KubeVersion = DefaultKubeVersion
	}
	if c.WorkDir == "" {
		c.WorkDir = "/var/lib/selfkube-e2e"
	}
	if c.ArtifactsDir == "" {
		c.ArtifactsDir = filepath.Join(c.WorkDir, "artifacts")
	}
	return c
}

// KubeBinDir holds kubelet, kubeadm and the control-plane binaries of KubeVersion.
func (c Config) KubeBinDir() string {
	return filepath.Join(c.CacheDir, "bin", "kubernetes-"+c.KubeVersion)
}

// EtcdBinDir holds etcd and etcdctl.
func (c Config) EtcdBinDir() string {
	return filepath.Join(c.CacheDir, "bin", "etcd-"+etcdVersion)
}

// CNIBinDir holds the CNI plugins copied into every node's /opt/cni/bin.
func (c Config) CNIBinDir() string {
	return filepath.Join(c.CacheDir, "bin", "cni-plugins-"+cniPluginsVersion)
}

// ImagesDir holds the OCI image tarballs imported into every node's containerd.
func (c Config) ImagesDir() string { return filepath.Join(c.CacheDir, "images") }

// nodesDir holds one state directory per node.
func (c Config) nodesDir() string { return filepath.Join(c.WorkDir, "nodes") }

// Kubeadm is the path of the cached kubeadm binary.
func (c Config) Kubeadm() string { return filepath.Join(c.KubeBinDir(), "kubeadm") }

// Check reports what is missing for real nodes, with what to run to get it.
func (c Config) Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("real nodes need root (namespaces, cgroups, mounts): run as root")
	}
	for _, p := range []string{
		filepath.Join(c.KubeBinDir(), "kubelet"),
		c.Kubeadm(),
		filepath.Join(c.CNIBinDir(), "bridge"),
	} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("component %s is missing (%v): run `make components`", p, err)
		}
	}
	tars, _ := filepath.Glob(filepath.Join(c.ImagesDir(), "*.tar"))
	if len(tars) == 0 {
		return fmt.Errorf("no image tarballs in %s: run `make images`", c.ImagesDir())
	}
	for _, tool := range []string{"containerd", "runc", "ctr", "nsenter", "unshare", "ip", "iptables"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: run `make host-setup`", tool)
		}
	}
	return nil
}
