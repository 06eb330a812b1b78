package config

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

var testHost = Host{Hostname: "Node1", DefaultAddress: "192.0.2.99"}

// Every testdata/invalid-*.yaml must be listed here with the field path (or the part of
// the message) its error must name, so a new case cannot pass by failing for another reason.
var invalidCases = map[string]string{
	"unknown-field":          `unknown field "networking.podSubnt"`,
	"unknown-nested-field":   `unknown field "etcd.local.datadir"`,
	"duplicate-field":        `line 4: key "kubernetesVersion" already set`,
	"wrong-apiversion":       `apiVersion "selfkube.io/v1beta9" is not supported`,
	"unknown-kind":           `kind "InitConfiguration" is not supported`,
	"two-cluster-docs":       `a second ClusterConfiguration`,
	"bad-cidr":               `ClusterConfiguration.networking.podSubnet`,
	"overlapping-subnets":    `ClusterConfiguration.networking.serviceSubnet: Invalid value: "10.96.0.0/12": overlaps podSubnet`,
	"bad-version":            `ClusterConfiguration.kubernetesVersion`,
	"bad-etcd-version":       `ClusterConfiguration.etcdVersion: Invalid value: "3.6.16": must be an etcd release such as v3.6.16`,
	"endpoint-without-port":  `ClusterConfiguration.controlPlaneEndpoint: Invalid value: "192.0.2.10": must be host:port`,
	"endpoint-bad-port":      `ClusterConfiguration.controlPlaneEndpoint: Invalid value: "api.example.com:70000": port must be`,
	"unknown-key-algorithm":  `ClusterConfiguration.certificates.keyAlgorithm: Unsupported value: "ED25519"`,
	"leaf-outlives-ca":       `ClusterConfiguration.certificates.validity`,
	"both-etcds":             `ClusterConfiguration.etcd: Forbidden`,
	"etcd-snapshot-interval": `etcd.local.snapshots.interval: Invalid value: "10s": must be at least 1m`,
	"external-etcd-http":     `ClusterConfiguration.etcd.external.endpoints[0]`,
	"proxy-mode":             `ClusterConfiguration.proxy.mode: Unsupported value: "userspace"`,
	"network-plugin":         `ClusterConfiguration.networking.plugin: Unsupported value: "flannel"`,
	"bad-dns-domain":         `ClusterConfiguration.networking.dnsDomain`,
	"extra-arg-dashes":       `ClusterConfiguration.apiServer.extraArgs[--v]`,
	"feature-gates-twice":    `ClusterConfiguration.controllerManager.extraArgs[feature-gates]`,
	"resource-quantity":      `ClusterConfiguration.scheduler.resources.requests[cpu]`,
	"node-bad-ip":            `NodeConfiguration.advertiseAddress`,
	"node-bad-taint":         `NodeConfiguration.taints[0].effect: Unsupported value: "Sometimes"`,
	"node-bad-name":          `NodeConfiguration.name`,
	"node-cri-socket":        `NodeConfiguration.criSocket`,
	"not-yaml":               `document 1 is not valid YAML`,

	"audit-relative-log-dir":     `ClusterConfiguration.apiServer.audit.logDir: Invalid value: "var/log/audit"`,
	"audit-negative-size":        `ClusterConfiguration.apiServer.audit.maxSizeMB: Invalid value: -5: must be at least 1`,
	"audit-policy-level":         `ClusterConfiguration.apiServer.audit.policy.rules[0].level: Unsupported value: "Everything"`,
	"audit-policy-version":       `ClusterConfiguration.apiServer.audit.policy.apiVersion: Invalid value: "audit.k8s.io/v1beta1"`,
	"audit-policy-unknown-field": `unknown field "apiServer.audit.policy.rules[0].resource"`,
	"audit-policy-mixed-rule":    `ClusterConfiguration.apiServer.audit.policy.rules[0].nonResourceURLs: Forbidden`,
	"audit-policy-no-rules":      `ClusterConfiguration.apiServer.audit.policy.rules: Required value`,
	"audit-policy-stage":         `ClusterConfiguration.apiServer.audit.policy.omitStages[0]: Unsupported value: "RequestRecieved"`,
	"audit-policy-group-version": `ClusterConfiguration.apiServer.audit.policy.rules[0].resources[0].group: Invalid value: "apps/v1"`,
}

func TestLoadInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid test cases found: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "invalid-"), ".yaml")
		t.Run(name, func(t *testing.T) {
			want, ok := invalidCases[name]
			if !ok {
				t.Fatalf("%s has no expected error in invalidCases", f)
			}
			cfg, err := LoadFile(f, testHost)
			if err == nil {
				t.Fatalf("LoadFile(%s) = %+v, want an error naming %q", f, cfg, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("LoadFile(%s) error:\n%v\nwant it to contain %q", f, err, want)
			}
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error %q does not name the file %s", err, f)
			}
		})
	}
	for name := range invalidCases {
		if _, err := os.Stat("testdata/invalid-" + name + ".yaml"); err != nil {
			t.Errorf("invalidCases lists %q but its file is missing: %v", name, err)
		}
	}
}

func TestLoadValid(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, c *Config)
	}{
		{"valid-minimal.yaml", func(t *testing.T, c *Config) {
			want := Config{
				Cluster: ClusterConfiguration{
					KubernetesVersion: "v1.36.3", EtcdVersion: "v3.6.6", ImageRepository: "registry.k8s.io",
					ControlPlaneEndpoint: "192.0.2.10:6443",
					Networking:           Networking{PodSubnet: "10.244.0.0/16", ServiceSubnet: "10.96.0.0/12", DNSDomain: "cluster.local", Plugin: "selfkube"},
					APIServer: APIServer{EncryptionAtRest: ptr.To(true), Audit: Audit{
						Enabled: ptr.To(true), LogDir: "/var/log/kubernetes/audit", MaxAge: 7, MaxBackups: 10, MaxSizeMB: 100,
						Policy: DefaultAuditPolicy(),
					}},
					Etcd: Etcd{Local: &LocalEtcd{DataDir: "/var/lib/etcd",
						Snapshots: &EtcdSnapshots{Interval: &metav1.Duration{Duration: 12 * time.Hour}, Keep: 5}}},
					Proxy: Proxy{Mode: "iptables"},
				},
				Node: NodeConfiguration{Name: "node1", AdvertiseAddress: "192.0.2.10", NodeIP: "192.0.2.10",
					CRISocket: "unix:///run/containerd/containerd.sock", Kubelet: Kubelet{CgroupDriver: "cgroupfs"}},
			}
			if c.Cluster.Certificates.KeyAlgorithm != KeyAlgorithmECDSAP256 ||
				c.Cluster.Certificates.CAValidity.Duration != 10*365*24*time.Hour ||
				c.Cluster.Certificates.Validity.Duration != 365*24*time.Hour {
				t.Errorf("certificate defaults = %+v", c.Cluster.Certificates)
			}
			c.Cluster.Certificates = Certificates{}
			want.Cluster.TypeMeta = c.Cluster.TypeMeta
			want.Node.TypeMeta = c.Node.TypeMeta
			if d := cmp.Diff(want, *c); d != "" {
				t.Errorf("defaulted config (-want +got):\n%s", d)
			}
		}},
		{"valid-empty.yaml", func(t *testing.T, c *Config) {
			if c.Node.AdvertiseAddress != "192.0.2.99" || c.Cluster.ControlPlaneEndpoint != "192.0.2.99:6443" {
				t.Errorf("with no endpoint, want the host address: advertise %q endpoint %q",
					c.Node.AdvertiseAddress, c.Cluster.ControlPlaneEndpoint)
			}
		}},
		{"valid-full.yaml", func(t *testing.T, c *Config) {
			if got := c.Cluster.Image(ImageAPIServer); got != "registry.local/custom/kube-apiserver:v1.35.4-patched" {
				t.Errorf("apiserver image override ignored: %s", got)
			}
			if got := c.Cluster.Image(ImageScheduler); got != "registry.local/k8s/kube-scheduler:v1.35.4" {
				t.Errorf("scheduler image = %s", got)
			}
			if got := c.Cluster.Image(ImageEtcd); got != "registry.local/etcd:3.6.6-custom" {
				t.Errorf("etcd.local.image ignored: %s", got)
			}
			if got := c.Cluster.Image(ImageCoreDNS); got != "registry.local/k8s/coredns:v1.13.1" { // v1.35: kubeadm's CoreDNS
				t.Errorf("coredns image = %s", got)
			}
			if c.Cluster.Certificates.Validity.Duration != 90*24*time.Hour || c.Cluster.Certificates.KeyAlgorithm != "RSA-3072" {
				t.Errorf("certificates = %+v", c.Cluster.Certificates)
			}
			if c.Node.NodeIP != "192.0.2.22" || c.Node.Name != "cp-1" || c.Cluster.ControlPlaneEndpoint != "api.example.com:443" {
				t.Errorf("explicit fields were overridden by defaults: %+v", c.Node)
			}
			if len(c.Node.Taints) != 1 || c.Node.Taints[0].Effect != corev1.TaintEffectNoExecute {
				t.Errorf("taints = %+v", c.Node.Taints)
			}
			a := c.Cluster.APIServer.Audit
			if a.LogDir != "/data/audit" || a.MaxAge != 30 || a.MaxBackups != 3 || a.MaxSizeMB != 50 {
				t.Errorf("audit settings were overridden by defaults: %+v", a)
			}
			if p := a.Policy; p.APIVersion != AuditPolicyAPIVersion || p.Kind != AuditPolicyKind || len(p.Rules) != 4 ||
				p.Rules[0].Resources[0].ResourceNames[0] != "kubernetes" || *p.Rules[0].OmitManagedFields {
				t.Errorf("inline audit policy = %+v", p)
			}
		}},
		{"valid-audit-off.yaml", func(t *testing.T, c *Config) {
			if *c.Cluster.APIServer.EncryptionAtRest || *c.Cluster.APIServer.Audit.Enabled {
				t.Errorf("encryptionAtRest %v, audit.enabled %v: want both false",
					*c.Cluster.APIServer.EncryptionAtRest, *c.Cluster.APIServer.Audit.Enabled)
			}
		}},
		{"valid-external-etcd.yaml", func(t *testing.T, c *Config) {
			if c.Cluster.Etcd.Local != nil || len(c.Cluster.Etcd.External.Endpoints) != 2 {
				t.Errorf("etcd = %+v", c.Cluster.Etcd)
			}
			if c.Cluster.ControlPlaneEndpoint != "192.0.2.30:6443" {
				t.Errorf("endpoint should default to the advertise address: %q", c.Cluster.ControlPlaneEndpoint)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := LoadFile(filepath.Join("testdata", tt.file), testHost)
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestDefaultIsIdempotentAndValid(t *testing.T) {
	c := &Config{}
	Default(c, testHost)
	first := *c
	Default(c, testHost)
	if d := cmp.Diff(first, *c); d != "" {
		t.Errorf("second Default changed the config:\n%s", d)
	}
	if errs := Validate(c); len(errs) > 0 {
		t.Errorf("defaults do not validate: %v", errs)
	}
}

func TestNoHostAddressNeedsEndpoint(t *testing.T) {
	_, err := LoadFile("", Host{Hostname: "n"})
	if err == nil || !strings.Contains(err.Error(), "ClusterConfiguration.controlPlaneEndpoint: Required value") {
		t.Fatalf("want a required-endpoint error when nothing gives an address, got %v", err)
	}
}

func TestPrintDefaultsRoundTrip(t *testing.T) {
	c := &Config{}
	Default(c, testHost)
	out, err := PrintDefaults(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(out)
	if err != nil {
		t.Fatalf("printed defaults do not decode:\n%s\n%v", out, err)
	}
	Default(back, Host{})
	if d := cmp.Diff(c, back); d != "" {
		t.Errorf("printed defaults load back differently (-printed +loaded):\n%s\noutput:\n%s", d, out)
	}
	for _, want := range []string{"# Pod addresses", "#   apiServer: registry.k8s.io/kube-apiserver:v1.36.3", "kind: NodeConfiguration"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("print-defaults output lacks %q:\n%s", want, out)
		}
	}
}

// TestEveryFieldDocumented fills every field and requires a fieldDocs entry for each
// JSON path, so print-defaults cannot silently leave a new field undocumented.
func TestEveryFieldDocumented(t *testing.T) {
	full, err := LoadFile("testdata/valid-full.yaml", testHost)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := LoadFile("testdata/valid-external-etcd.yaml", testHost)
	if err != nil {
		t.Fatal(err)
	}
	full.Cluster.Etcd.External = ext.Cluster.Etcd.External
	for _, doc := range []any{full.Cluster, full.Node} {
		node, err := documented(doc)
		if err != nil {
			t.Fatal(err)
		}
		var walk func(n *yaml.Node, prefix string)
		walk = func(n *yaml.Node, prefix string) {
			// The audit policy is an upstream kind, documented upstream.
			if n.Kind != yaml.MappingNode || strings.HasSuffix(prefix, "extraArgs") || strings.HasSuffix(prefix, "images") ||
				prefix == "labels" || prefix == "apiServer.audit.policy" {
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				path := n.Content[i].Value
				if prefix != "" {
					path = prefix + "." + path
				}
				if _, ok := fieldDocs[path]; !ok {
					t.Errorf("field %q has no entry in fieldDocs", path)
				}
				walk(n.Content[i+1], path)
			}
		}
		walk(node, "")
	}
}

// TestDefaultAuditPolicy checks the promises of the default policy: it validates, every
// request not silenced is logged at Metadata, and no rule logs a body.
func TestDefaultAuditPolicy(t *testing.T) {
	p := DefaultAuditPolicy()
	if errs := validateAuditPolicy(p, nil); len(errs) > 0 {
		t.Fatalf("the default policy does not validate: %v", errs.ToAggregate())
	}
	for i, r := range p.Rules {
		if r.Level != AuditLevelNone && r.Level != AuditLevelMetadata {
			t.Errorf("rule %d logs at %s: the default policy never logs bodies", i, r.Level)
		}
	}
	first := p.Rules[0]
	var sensitive []string
	for _, gr := range first.Resources {
		sensitive = append(sensitive, gr.Resources...)
	}
	for _, want := range []string{"secrets", "configmaps", "serviceaccounts/token", "tokenreviews"} {
		if first.Level != AuditLevelMetadata || !slices.Contains(sensitive, want) {
			t.Errorf("the first rule (%s, %v) does not log %s at Metadata", first.Level, sensitive, want)
		}
	}
	last := p.Rules[len(p.Rules)-1]
	if last.Level != AuditLevelMetadata || len(last.Resources)+len(last.NonResourceURLs)+len(last.Verbs)+len(last.Users)+len(last.UserGroups) != 0 {
		t.Errorf("the last rule %+v is not a catch-all at Metadata", last)
	}
	if !slices.Equal(p.OmitStages, []AuditStage{AuditStageRequestReceived}) {
		t.Errorf("omitStages = %v, want each request logged once, when answered", p.OmitStages)
	}
}

// A configuration published before etcdVersion existed (the cluster's selfkube-config,
// read as it is, undefaulted) still names the etcd image its members run.
func TestEtcdImageOfAnOlderConfiguration(t *testing.T) {
	c := ClusterConfiguration{ImageRepository: "registry.local", Etcd: Etcd{Local: &LocalEtcd{}}}
	if got := c.Image(ImageEtcd); got != "registry.local/etcd:3.6.6-0" {
		t.Errorf("etcd image without etcdVersion: %q, want registry.local/etcd:3.6.6-0", got)
	}
	c.EtcdVersion = "v3.6.16"
	if got := c.Image(ImageEtcd); got != "registry.local/etcd:3.6.16-0" {
		t.Errorf("etcd image of v3.6.16: %q, want registry.local/etcd:3.6.16-0", got)
	}
}

// CoreDNS follows the Kubernetes release: an upgrade from v1.35 starts from the CoreDNS
// a kubeadm v1.35 cluster runs (kubeadm's constants.CoreDNSVersion of v1.35.4 is
// v1.13.1) and ends at selfkube's pinned v1.15.0, which an image override still beats.
func TestCoreDNSFollowsTheKubernetesRelease(t *testing.T) {
	for version, want := range map[string]string{
		"v1.35.4": "registry.k8s.io/coredns/coredns:v1.13.1",
		"v1.36.1": "registry.k8s.io/coredns/coredns:v1.15.0",
		"v1.36.3": "registry.k8s.io/coredns/coredns:v1.15.0",
		"v1.37.0": "registry.k8s.io/coredns/coredns:v1.15.0",
	} {
		c := ClusterConfiguration{KubernetesVersion: version, ImageRepository: DefaultImageRepository}
		if got := c.Image(ImageCoreDNS); got != want {
			t.Errorf("Kubernetes %s: CoreDNS image %s, want %s", version, got, want)
		}
	}
	c := ClusterConfiguration{KubernetesVersion: "v1.35.4", ImageRepository: "registry.local"}
	if got := c.Image(ImageCoreDNS); got != "registry.local/coredns:v1.13.1" {
		t.Errorf("another repository: %s", got)
	}
	c.Images.CoreDNS = "example.com/dns:1"
	if got := c.Image(ImageCoreDNS); got != "example.com/dns:1" {
		t.Errorf("an override: %s, want it as it is", got)
	}
}
