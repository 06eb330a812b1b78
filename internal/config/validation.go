package config

import (
	"fmt"
	"k8s.io/apimachinery/pkg/api/resource"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var versionPattern = regexp.MustCompile(`^v1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// EtcdVersionPattern is what an etcd release looks like: v3.<minor>.<patch>.
const EtcdVersionPattern = `^v3\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`

var etcdVersionRE = regexp.MustCompile(EtcdVersionPattern)

// ValidateEtcdVersion checks an etcd release such as v3.6.16.
func ValidateEtcdVersion(v string, p *field.Path) field.ErrorList {
	if !etcdVersionRE.MatchString(v) {
		return field.ErrorList{field.Invalid(p, v, "must be an etcd release such as v3.6.16")}
	}
	return nil
}

// Validate checks a defaulted configuration and returns every problem it finds, each
// naming the field it is about.
func Validate(cfg *Config) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateCluster(&cfg.Cluster, field.NewPath("ClusterConfiguration"))...)
	errs = append(errs, validateNode(&cfg.Node, field.NewPath("NodeConfiguration"))...)
	return errs
}

func validateCluster(c *ClusterConfiguration, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if !versionPattern.MatchString(c.KubernetesVersion) {
		errs = append(errs, field.Invalid(p.Child("kubernetesVersion"), c.KubernetesVersion,
			"must be a Kubernetes release such as v1.36.3"))
	}
	if c.ImageRepository == "" || strings.ContainsAny(c.ImageRepository, " @\t") || strings.HasSuffix(c.ImageRepository, "/") {
		errs = append(errs, field.Invalid(p.Child("imageRepository"), c.ImageRepository,
			"must be a registry host with an optional path, such as registry.k8s.io"))
	}
	errs = append(errs, validateEndpoint(c.ControlPlaneEndpoint, p.Child("controlPlaneEndpoint"))...)
	errs = append(errs, validateNetworking(&c.Networking, p.Child("networking"))...)
	errs = append(errs, ValidateComponent(&c.APIServer.Component, p.Child("apiServer"))...)
	for i, san := range c.APIServer.CertSANs {
		if net.ParseIP(san) == nil && len(validation.IsDNS1123Subdomain(strings.TrimPrefix(san, "*."))) > 0 {
			errs = append(errs, field.Invalid(p.Child("apiServer", "certSANs").Index(i), san,
				"must be an IP address or a DNS name"))
		}
	}
	errs = append(errs, validateAudit(&c.APIServer.Audit, p.Child("apiServer", "audit"))...)
	errs = append(errs, ValidateComponent(&c.ControllerManager, p.Child("controllerManager"))...)
	errs = append(errs, ValidateComponent(&c.Scheduler, p.Child("scheduler"))...)
	errs = append(errs, validateEtcd(&c.Etcd, p.Child("etcd"))...)
	switch {
	case c.Etcd.External != nil && c.EtcdVersion != "":
		errs = append(errs, field.Forbidden(p.Child("etcdVersion"), "selfkube runs no etcd with an external one: leave etcdVersion out"))
	case c.Etcd.External == nil:
		errs = append(errs, ValidateEtcdVersion(c.EtcdVersion, p.Child("etcdVersion"))...)
	}
	errs = append(errs, validateCertificates(&c.Certificates, p.Child("certificates"))...)
	switch c.Proxy.Mode {
	case "iptables", "ipvs", "nftables":
	default:
		errs = append(errs, field.NotSupported(p.Child("proxy", "mode"), c.Proxy.Mode,
			[]string{"iptables", "ipvs", "nftables"}))
	}
	return errs
}

func validateEndpoint(ep string, p *field.Path) field.ErrorList {
	if ep == "" {
		return field.ErrorList{field.Required(p,
			"set controlPlaneEndpoint (host:port) or the node's advertiseAddress")}
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return field.ErrorList{field.Invalid(p, ep, "must be host:port, such as 192.0.2.10:6443 or api.example.com:6443")}
	}
	var errs field.ErrorList
	if net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		errs = append(errs, field.Invalid(p, ep, "host must be an IP address or a DNS name"))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errs = append(errs, field.Invalid(p, ep, "port must be a number from 1 to 65535"))
	}
	return errs
}

func validateNetworking(n *Networking, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	pods, err := netip.ParsePrefix(n.PodSubnet)
	if err != nil {
		errs = append(errs, field.Invalid(p.Child("podSubnet"), n.PodSubnet, "must be a CIDR such as 10.244.0.0/16"))
	} else if pods.Addr().Is4() && pods.Bits() > 24 {
		errs = append(errs, field.Invalid(p.Child("podSubnet"), n.PodSubnet,
			"must be /24 or larger: each node gets a /24 from it"))
	}
	svcs, err2 := netip.ParsePrefix(n.ServiceSubnet)
	if err2 != nil {
		errs = append(errs, field.Invalid(p.Child("serviceSubnet"), n.ServiceSubnet, "must be a CIDR such as 10.96.0.0/12"))
	} else if svcs.Addr().Is4() && svcs.Bits() > 28 {
		errs = append(errs, field.Invalid(p.Child("serviceSubnet"), n.ServiceSubnet, "must be /28 or larger"))
	}
	if err == nil && err2 == nil && pods.Overlaps(svcs) {
		errs = append(errs, field.Invalid(p.Child("serviceSubnet"), n.ServiceSubnet,
			fmt.Sprintf("overlaps podSubnet %s: pod and service addresses must be distinct", n.PodSubnet)))
	}
	if msgs := validation.IsDNS1123Subdomain(n.DNSDomain); len(msgs) > 0 {
		errs = append(errs, field.Invalid(p.Child("dnsDomain"), n.DNSDomain, strings.Join(msgs, "; ")))
	}
	switch n.Plugin {
	case NetworkPluginSelfkube, NetworkPluginNone:
	default:
		errs = append(errs, field.NotSupported(p.Child("plugin"), n.Plugin,
			[]string{NetworkPluginSelfkube, NetworkPluginNone}))
	}
	return errs
}

// ValidateComponent checks a control-plane component's settings at p (also those of the
// ControlPlane resource's spec).
func ValidateComponent(c *Component, p *field.Path) field.ErrorList {
	errs := validateExtraArgs(c.ExtraArgs, p.Child("extraArgs"))
	if _, ok := c.ExtraArgs["feature-gates"]; ok && len(c.FeatureGates) > 0 {
		errs = append(errs, field.Forbidden(p.Child("extraArgs").Key("feature-gates"),
			"set feature gates in featureGates only, not also in extraArgs"))
	}
	for g := range c.FeatureGates {
		if g == "" || strings.ContainsAny(g, "=, ") {
			errs = append(errs, field.Invalid(p.Child("featureGates").Key(g), g, "must be a feature gate name, such as InPlacePodVerticalScaling"))
		}
	}
	for _, l := range []struct {
		name string
		list map[string]string
	}{{"requests", c.Resources.Requests}, {"limits", c.Resources.Limits}} {
		for name, q := range l.list {
			if name == "" {
				errs = append(errs, field.Invalid(p.Child("resources", l.name).Key(name), name, "must be a resource name, such as cpu or memory"))
			}
			if _, err := resource.ParseQuantity(q); err != nil {
				errs = append(errs, field.Invalid(p.Child("resources", l.name).Key(name), q, "must be a quantity, such as 250m or 512Mi"))
			}
		}
	}
	return errs
}

func validateExtraArgs(args map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for k := range args {
		if k == "" || strings.HasPrefix(k, "-") || strings.ContainsAny(k, "= ") {
			errs = append(errs, field.Invalid(p.Key(k), k, "must be a flag name without leading dashes, such as v or audit-log-path"))
		}
	}
	return errs
}

// EtcdOwnFlags are the flags of a local etcd member that selfkube sets and no extraArgs
// may: they make the member what it is (its name, data, addresses, certificates and
// cluster), and changing one on a running member would cut it off or wipe it.
var EtcdOwnFlags = []string{
	"advertise-client-urls", "cert-file", "client-cert-auth", "config-file", "data-dir",
	"force-new-cluster", "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
	"initial-cluster-token", "key-file", "listen-client-urls", "listen-metrics-urls", "listen-peer-urls",
	"name", "peer-cert-file", "peer-client-cert-auth", "peer-key-file", "peer-trusted-ca-file",
	"trusted-ca-file", "wal-dir",
}

// ValidateEtcdExtraArgs checks the extra flags of local etcd members: flag names, none
// of EtcdOwnFlags.
func ValidateEtcdExtraArgs(args map[string]string, p *field.Path) field.ErrorList {
	errs := validateExtraArgs(args, p)
	for k := range args {
		if slices.Contains(EtcdOwnFlags, k) {
			errs = append(errs, field.Forbidden(p.Key(k), "--"+k+" is set by selfkube for each member and cannot be changed"))
		}
	}
	return errs
}

func validateEtcd(e *Etcd, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case e.Local != nil && e.External != nil:
		errs = append(errs, field.Forbidden(p, "set either local or external, not both"))
	case e.Local != nil:
		if !strings.HasPrefix(e.Local.DataDir, "/") {
			errs = append(errs, field.Invalid(p.Child("local", "dataDir"), e.Local.DataDir, "must be an absolute path"))
		}
		errs = append(errs, ValidateEtcdExtraArgs(e.Local.ExtraArgs, p.Child("local", "extraArgs"))...)
		if s := e.Local.Snapshots; s != nil {
			sp := p.Child("local", "snapshots")
			if s.Interval != nil && s.Interval.Duration != 0 && s.Interval.Duration < time.Minute {
				errs = append(errs, field.Invalid(sp.Child("interval"), s.Interval.Duration.String(), "must be at least 1m, or 0 to turn scheduled snapshots off"))
			}
			if s.Keep < 0 {
				errs = append(errs, field.Invalid(sp.Child("keep"), s.Keep, "must be at least 1"))
			}
		}
	case e.External != nil:
		ep := p.Child("external")
		if len(e.External.Endpoints) == 0 {
			errs = append(errs, field.Required(ep.Child("endpoints"), "list at least one etcd client URL"))
		}
		for i, u := range e.External.Endpoints {
			parsed, err := url.Parse(u)
			if err != nil || parsed.Scheme != "https" || parsed.Host == "" {
				errs = append(errs, field.Invalid(ep.Child("endpoints").Index(i), u, "must be an https:// URL"))
			}
		}
		for name, f := range map[string]string{"caFile": e.External.CAFile, "certFile": e.External.CertFile, "keyFile": e.External.KeyFile} {
			if !strings.HasPrefix(f, "/") {
				errs = append(errs, field.Required(ep.Child(name), "must be an absolute path on the control-plane hosts"))
			}
		}
	}
	return errs
}

func validateAudit(a *Audit, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if !path.IsAbs(a.LogDir) || path.Clean(a.LogDir) != a.LogDir || a.LogDir == "/" {
		errs = append(errs, field.Invalid(p.Child("logDir"), a.LogDir,
			"must be a clean absolute path of a directory, such as "+DefaultAuditLogDir))
	}
	for _, n := range []struct {
		name  string
		value int32
	}{{"maxAge", a.MaxAge}, {"maxBackups", a.MaxBackups}, {"maxSizeMB", a.MaxSizeMB}} {
		if n.value < 1 {
			errs = append(errs, field.Invalid(p.Child(n.name), n.value, "must be at least 1, so that the log cannot fill the disk"))
		}
	}
	if a.Policy != nil {
		errs = append(errs, validateAuditPolicy(a.Policy, p.Child("policy"))...)
	}
	return errs
}

var (
	auditLevels = []string{string(AuditLevelNone), string(AuditLevelMetadata), string(AuditLevelRequest), string(AuditLevelRequestResponse)}
	auditStages = []string{string(AuditStageRequestReceived), string(AuditStageResponseStarted), string(AuditStageResponseComplete), string(AuditStagePanic)}
)

// validateAuditPolicy checks what the apiserver would refuse at start-up (which, for
// the self-hosted apiserver, is a crash loop on every control-plane node).
func validateAuditPolicy(pol *AuditPolicy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if pol.APIVersion != AuditPolicyAPIVersion {
		errs = append(errs, field.Invalid(p.Child("apiVersion"), pol.APIVersion, "must be "+AuditPolicyAPIVersion))
	}
	if pol.Kind != AuditPolicyKind {
		errs = append(errs, field.Invalid(p.Child("kind"), pol.Kind, "must be "+AuditPolicyKind))
	}
	if len(pol.Rules) == 0 {
		errs = append(errs, field.Required(p.Child("rules"), "list at least one rule: a policy without rules logs nothing"))
	}
	errs = append(errs, validateAuditStages(pol.OmitStages, p.Child("omitStages"))...)
	for i, r := range pol.Rules {
		rp := p.Child("rules").Index(i)
		if !slices.Contains(auditLevels, string(r.Level)) {
			errs = append(errs, field.NotSupported(rp.Child("level"), r.Level, auditLevels))
		}
		errs = append(errs, validateAuditStages(r.OmitStages, rp.Child("omitStages"))...)
		if len(r.NonResourceURLs) > 0 && (len(r.Resources) > 0 || len(r.Namespaces) > 0) {
			errs = append(errs, field.Forbidden(rp.Child("nonResourceURLs"),
				"a rule matches either resources (resources, namespaces) or non-resource URLs, not both: split it in two"))
		}
		for j, u := range r.NonResourceURLs {
			if u != "*" && (!strings.HasPrefix(u, "/") || strings.Contains(strings.TrimSuffix(u, "*"), "*")) {
				errs = append(errs, field.Invalid(rp.Child("nonResourceURLs").Index(j), u,
					"must be * or a path starting with /, with * allowed only at its end"))
			}
		}
		for j, gr := range r.Resources {
			gp := rp.Child("resources").Index(j)
			if msgs := validation.IsDNS1123Subdomain(gr.Group); gr.Group != "" && len(msgs) > 0 {
				errs = append(errs, field.Invalid(gp.Child("group"), gr.Group,
					"must be an API group name without a version, such as apps (\"\" is the core group)"))
			}
			if len(gr.ResourceNames) > 0 && len(gr.Resources) == 0 {
				errs = append(errs, field.Required(gp.Child("resources"), "resourceNames need the resources they are names of"))
			}
		}
	}
	return errs
}

func validateAuditStages(stages []AuditStage, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, st := range stages {
		if !slices.Contains(auditStages, string(st)) {
			errs = append(errs, field.NotSupported(p.Index(i), st, auditStages))
		}
	}
	return errs
}

// KeyAlgorithms lists the accepted values of certificates.keyAlgorithm.
var KeyAlgorithms = []string{KeyAlgorithmECDSAP256, KeyAlgorithmRSA2048, KeyAlgorithmRSA3072, KeyAlgorithmRSA4096}

func validateCertificates(c *Certificates, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	known := false
	for _, a := range KeyAlgorithms {
		known = known || a == c.KeyAlgorithm
	}
	if !known {
		errs = append(errs, field.NotSupported(p.Child("keyAlgorithm"), c.KeyAlgorithm, KeyAlgorithms))
	}
	if c.CAValidity.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("caValidity"), c.CAValidity.Duration.String(), "must be positive"))
	}
	if c.Validity.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("validity"), c.Validity.Duration.String(), "must be positive"))
	} else if c.Validity.Duration > c.CAValidity.Duration {
		errs = append(errs, field.Invalid(p.Child("validity"), c.Validity.Duration.String(),
			"must not exceed caValidity: a leaf cannot outlive its CA"))
	}
	if c.RenewBefore.Duration <= 0 || c.RenewBefore.Duration >= c.Validity.Duration {
		errs = append(errs, field.Invalid(p.Child("renewBefore"), c.RenewBefore.Duration.String(),
			"must be positive and less than validity: a certificate renewed "+c.RenewBefore.Duration.String()+" before it expires would be due again at once"))
	}
	return errs
}

func validateNode(n *NodeConfiguration, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if msgs := validation.IsDNS1123Subdomain(n.Name); len(msgs) > 0 {
		errs = append(errs, field.Invalid(p.Child("name"), n.Name, strings.Join(msgs, "; ")))
	}
	if net.ParseIP(n.AdvertiseAddress) == nil {
		errs = append(errs, field.Invalid(p.Child("advertiseAddress"), n.AdvertiseAddress, "must be an IP address of this host"))
	}
	if net.ParseIP(n.NodeIP) == nil {
		errs = append(errs, field.Invalid(p.Child("nodeIP"), n.NodeIP, "must be an IP address of this host"))
	}
	if u, err := url.Parse(n.CRISocket); err != nil || u.Scheme != "unix" || u.Path == "" {
		errs = append(errs, field.Invalid(p.Child("criSocket"), n.CRISocket, "must be a unix:// URL, such as "+DefaultCRISocket))
	}
	switch n.Kubelet.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		errs = append(errs, field.NotSupported(p.Child("kubelet", "cgroupDriver"), n.Kubelet.CgroupDriver, []string{"cgroupfs", "systemd"}))
	}
	errs = append(errs, metav1validation.ValidateLabels(n.Labels, p.Child("labels"))...)
	for i, t := range n.Taints {
		tp := p.Child("taints").Index(i)
		if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 {
			errs = append(errs, field.Invalid(tp.Child("key"), t.Key, strings.Join(msgs, "; ")))
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect,
				[]corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}))
		}
	}
	return errs
}
