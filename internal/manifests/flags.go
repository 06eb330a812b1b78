package manifests

import (
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/selfkube/selfkube/internal/config"
)

// flags are a component's command-line flags by name, without the leading dashes.
type flags map[string]string

// command renders binary and its flags, extra overriding or adding to the defaults,
// sorted by name for stable output.
func (f flags) command(binary string, extra map[string]string) []string {
	merged := make(flags, len(f)+len(extra))
	for k, v := range f {
		merged[k] = v
	}
	for k, v := range extra {
		merged[k] = v
	}
	names := make([]string, 0, len(merged))
	for k := range merged {
		names = append(names, k)
	}
	sort.Strings(names)
	cmd := make([]string, 0, len(names)+1)
	cmd = append(cmd, binary)
	for _, k := range names {
		cmd = append(cmd, "--"+k+"="+merged[k])
	}
	return cmd
}

// extraFlags are the flags component settings c add to defaults: its extraArgs, and
// its feature gates merged over those of defaults into one --feature-gates.
func extraFlags(defaults flags, c config.Component) map[string]string {
	if len(c.FeatureGates) == 0 {
		return c.ExtraArgs
	}
	gates := map[string]string{}
	for _, g := range strings.Split(defaults["feature-gates"], ",") {
		if name, value, ok := strings.Cut(g, "="); ok {
			gates[name] = value
		}
	}
	for name, on := range c.FeatureGates {
		gates[name] = strconv.FormatBool(on)
	}
	names := make([]string, 0, len(gates))
	for name := range gates {
		names = append(names, name)
	}
	sort.Strings(names)
	list := make([]string, 0, len(names))
	for _, name := range names {
		list = append(list, name+"="+gates[name])
	}
	extra := make(map[string]string, len(c.ExtraArgs)+1)
	for k, v := range c.ExtraArgs {
		extra[k] = v
	}
	extra["feature-gates"] = strings.Join(list, ",")
	return extra
}

// filePaths tells where a container finds an asset file ("tls/ca.crt").
type filePaths func(asset string) string

// bootstrapPath is where the temporary static pods find an asset file: the host copy of
// the asset directory, mounted at the same path.
func bootstrapPath(asset string) string { return path.Join(BootstrapSecretsDir, asset) }

// secretPath is where self-hosted pods find an asset file: in their Secret's mount.
func secretPath(asset string) string { return path.Join(SecretsMountDir, secretKey(asset)) }

// secretKey is the Secret data key of an asset file: its base name, prefixed with the
// subdirectory below tls/ ("tls/etcd/ca.crt" → "etcd-ca.crt"), as keys cannot hold "/".
func secretKey(asset string) string { return SecretKey(asset) }

// SecretKey is the key under which a control-plane Secret holds an asset file
// ("tls/etcd/ca.crt" → "etcd-ca.crt").
func SecretKey(asset string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(asset, "tls/"), "auth/")
	return strings.ReplaceAll(s, "/", "-")
}

// API server shutdown: on SIGTERM the server keeps serving for the delay while its
// /readyz fails, then closes its listener, so that with port sharing the kernel hands
// every new connection to the replacement, and lets in-flight requests finish. (It does
// not answer new requests with 429 + Retry-After meanwhile: on a shared port that would
// fail requests the replacement could have served.) The grace period covers the delay
// plus the drain.
const (
	apiServerShutdownDelay      = "5s"
	apiServerWatchDrain         = "10s"
	apiServerTerminationSeconds = 30
)

// loopback is the loopback address of the advertise address's family.
func loopback(advertise string) string {
	if ip := net.ParseIP(advertise); ip != nil && ip.To4() == nil {
		return "::1"
	}
	return "127.0.0.1"
}

// apiServerFlags are kube-apiserver's flags; advertise is the address it announces.
func apiServerFlags(cfg *config.Config, p filePaths, advertise string) flags {
	c := &cfg.Cluster
	f := flags{
		"advertise-address":           advertise,
		"allow-privileged":            "true",
		"authorization-mode":          "Node,RBAC",
		"client-ca-file":              p(FileCACert),
		"enable-admission-plugins":    "NodeRestriction",
		"enable-bootstrap-token-auth": "true",
		"endpoint-reconciler-type":    "lease",
		// The kubelets' serving certificates come from CSRs the cluster CA signs (their
		// kubelets have serverTLSBootstrap; selfkube's approver checks what they name):
		// logs, exec and port-forward verify the kubelet they reach.
		"kubelet-certificate-authority":           p(FileCACert),
		"kubelet-client-certificate":              p(FileAPIServerKubeletCert),
		"kubelet-client-key":                      p(FileAPIServerKubeletKey),
		"kubelet-preferred-address-types":         "InternalIP,ExternalIP,Hostname",
		"permit-port-sharing":                     "true",
		"proxy-client-cert-file":                  p(FileFrontProxyClientCert),
		"proxy-client-key-file":                   p(FileFrontProxyClientKey),
		"requestheader-allowed-names":             "front-proxy-client",
		"requestheader-client-ca-file":            p(FileFrontProxyCACert),
		"requestheader-extra-headers-prefix":      "X-Remote-Extra-",
		"requestheader-group-headers":             "X-Remote-Group",
		"requestheader-username-headers":          "X-Remote-User",
		"secure-port":                             strconv.Itoa(apiServerPort),
		"service-account-issuer":                  "https://kubernetes.default.svc." + c.Networking.DNSDomain,
		"service-account-key-file":                p(FileServiceAccountPub),
		"service-account-signing-key-file":        p(FileServiceAccountKey),
		"service-cluster-ip-range":                c.Networking.ServiceSubnet,
		"shutdown-delay-duration":                 apiServerShutdownDelay,
		"shutdown-watch-termination-grace-period": apiServerWatchDrain,
		"tls-cert-file":                           p(FileAPIServerCert),
		"tls-private-key-file":                    p(FileAPIServerKey),
	}
	if c.APIServer.EncryptsSecrets() {
		f["encryption-provider-config"] = p(FileEncryptionConfig)
		// A rotated key in the Secret (or checkpoint) is read without a restart.
		f["encryption-provider-config-automatic-reload"] = "true"
	}
	if a := &c.APIServer.Audit; a.On() {
		f["audit-policy-file"] = p(FileAuditPolicy)
		f["audit-log-path"] = path.Join(a.LogDir, config.AuditLogFile)
		f["audit-log-maxage"] = strconv.Itoa(int(a.MaxAge))
		f["audit-log-maxbackup"] = strconv.Itoa(int(a.MaxBackups))
		f["audit-log-maxsize"] = strconv.Itoa(int(a.MaxSizeMB))
	}
	if e := c.Etcd.External; e != nil {
		f["etcd-servers"] = strings.Join(e.Endpoints, ",")
		f["etcd-cafile"] = e.CAFile
		f["etcd-certfile"] = e.CertFile
		f["etcd-keyfile"] = e.KeyFile
	} else {
		f["etcd-servers"] = "https://" + net.JoinHostPort(loopback(cfg.Node.AdvertiseAddress), strconv.Itoa(etcdClientPort))
		f["etcd-cafile"] = p(FileEtcdCACert)
		f["etcd-certfile"] = p(FileAPIServerEtcdCert)
		f["etcd-keyfile"] = p(FileAPIServerEtcdKey)
	}
	return f
}

// controllerManagerFlags are kube-controller-manager's flags.
func controllerManagerFlags(cfg *config.Config, p filePaths) flags {
	kubeconfig := p(FileControllerManagerConf)
	f := flags{
		"allocate-node-cidrs":              "true",
		"authentication-kubeconfig":        kubeconfig,
		"authorization-kubeconfig":         kubeconfig,
		"bind-address":                     "127.0.0.1",
		"client-ca-file":                   p(FileCACert),
		"cluster-cidr":                     cfg.Cluster.Networking.PodSubnet,
		"cluster-signing-cert-file":        p(FileCACert),
		"cluster-signing-key-file":         p(FileCAKey),
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"kubeconfig":                       kubeconfig,
		"leader-elect":                     "true",
		"permit-port-sharing":              "true",
		"requestheader-client-ca-file":     p(FileFrontProxyCACert),
		"root-ca-file":                     p(FileCACert),
		"secure-port":                      strconv.Itoa(controllerManagerPort),
		"service-account-private-key-file": p(FileServiceAccountKey),
		"service-cluster-ip-range":         cfg.Cluster.Networking.ServiceSubnet,
		"use-service-account-credentials":  "true",
	}
	// Hand the leader lease back on exit, so a successor (the self-hosted one after the
	// temporary one, a new replica in a rolling update) leads at once instead of waiting
	// out the 15 s lease. The gate exists from v1.36 on; an older release refuses to
	// start with a gate it does not know.
	if minorAtLeast(cfg.Cluster.KubernetesVersion, 36) {
		f["feature-gates"] = "ControllerManagerReleaseLeaderElectionLockOnExit=true"
	}
	return f
}

// minorAtLeast says version (v1.36.3) is v1.<minor> or newer; a version it cannot
// read counts as new (the configuration's validation refuses those anyway).
func minorAtLeast(version string, minor uint) bool {
	v, err := utilversion.ParseGeneric(version)
	if err != nil {
		return true
	}
	return v.Major() > 1 || v.Major() == 1 && v.Minor() >= minor
}

// schedulerFlags are kube-scheduler's flags.
func schedulerFlags(p filePaths) flags {
	kubeconfig := p(FileSchedulerConf)
	return flags{
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                kubeconfig,
		"leader-elect":              "true",
		"permit-port-sharing":       "true",
		"secure-port":               strconv.Itoa(schedulerPort),
	}
}

// etcdFlags are the flags of the local etcd member of this node.
func etcdFlags(cfg *config.Config) flags {
	n := &cfg.Node
	host := func(port int) string { return net.JoinHostPort(n.AdvertiseAddress, strconv.Itoa(port)) }
	local := func(port int) string { return net.JoinHostPort(loopback(n.AdvertiseAddress), strconv.Itoa(port)) }
	pki := func(name string) string { return path.Join(EtcdPKIDir, name) }
	peerURL := "https://" + host(etcdPeerPort)
	return flags{
		"advertise-client-urls":          "https://" + host(etcdClientPort),
		"cert-file":                      pki("server.crt"),
		"client-cert-auth":               "true",
		"data-dir":                       cfg.Cluster.Etcd.Local.DataDir,
		"feature-gates":                  "InitialCorruptCheck=true",
		"initial-advertise-peer-urls":    peerURL,
		"initial-cluster":                n.Name + "=" + peerURL,
		"key-file":                       pki("server.key"),
		"listen-client-urls":             "https://" + local(etcdClientPort) + ",https://" + host(etcdClientPort),
		"listen-metrics-urls":            "http://" + local(etcdMetricsPort),
		"listen-peer-urls":               peerURL,
		"name":                           n.Name,
		"peer-cert-file":                 pki("peer.crt"),
		"peer-client-cert-auth":          "true",
		"peer-key-file":                  pki("peer.key"),
		"peer-trusted-ca-file":           pki("ca.crt"),
		"snapshot-count":                 "10000",
		"trusted-ca-file":                pki("ca.crt"),
		"watch-progress-notify-interval": "5s",
	}
}
