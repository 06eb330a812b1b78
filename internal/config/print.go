package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// fieldDocs documents every field of both kinds by its JSON path. A test keeps it
// complete: a field without an entry here fails it.
var fieldDocs = map[string]string{
	"apiVersion": "The configuration API version.",
	"kind":       "ClusterConfiguration describes the cluster; NodeConfiguration this machine.",

	"kubernetesVersion":        "Kubernetes version of every control-plane component.",
	"etcdVersion":              "etcd release of the local members (v3.6.6); their image tag is 3.6.6-0.",
	"imageRepository":          "Registry and path of every component image: <imageRepository>/<component>:<tag>.",
	"images":                   "Full image references that override single components.",
	"controlPlaneEndpoint":     "host:port every client uses to reach the API (a load balancer or DNS name for HA).\nDefault: the first node's advertise address and port 6443.",
	"networking":               "Address ranges of the cluster.",
	"networking.podSubnet":     "Pod addresses; each node gets a /24 from it.",
	"networking.serviceSubnet": "ClusterIP Service addresses; the first is the API's, the tenth cluster DNS's.\nMust not overlap podSubnet.",
	"networking.dnsDomain":     "DNS suffix of Services: <service>.<namespace>.svc.<dnsDomain>.",
	"networking.plugin":        "Pod network: selfkube (the built-in bridge agent) or none (bring your own CNI DaemonSet).",
	"apiServer":                "kube-apiserver settings.",
	"apiServer.extraArgs":      "Flags added to, or overriding, the defaults (names without dashes).",
	"apiServer.featureGates":   "Feature gates merged into the component's --feature-gates.",
	"apiServer.resources":      "Requests and limits overriding the defaults by resource name (cpu: 250m).",
	"apiServer.certSANs":       "Extra DNS names and IPs for the API serving certificate.",
	"apiServer.encryptionAtRest": "Encrypt Secrets in etcd (secretbox). The key is generated once into the asset directory's\n" +
		"tls/encryption-config.yaml and kept like the CA; the apiserver Secret carries it. Data written\n" +
		"before stays readable. Do not turn it off on a cluster with encrypted Secrets: they would be\n" +
		"unreadable. Key rotation: see README.md, \"Encryption at rest\".",
	"apiServer.audit":         "API audit log, on every control-plane node.",
	"apiServer.audit.enabled": "Write the audit log (--audit-policy-file, --audit-log-*).",
	"apiServer.audit.logDir": "Host directory of audit.log and its rotated copies, mounted read-write into the\n" +
		"apiserver; init creates it 0700.",
	"apiServer.audit.maxAge":     "Days a rotated log file is kept (at least 1).",
	"apiServer.audit.maxBackups": "Number of rotated log files kept (at least 1).",
	"apiServer.audit.maxSizeMB":  "Size in megabytes at which the log file is rotated (at least 1).",
	"apiServer.audit.policy": "The audit policy, an audit.k8s.io/v1 Policy written inline (rules, omitStages,\n" +
		"omitManagedFields; no metadata). It goes into the apiserver Secret. The first matching rule\n" +
		"sets a request's level. Default (below): Metadata for everything, Secrets, ConfigMaps and\n" +
		"tokens first; None for health checks, reading events and lease renewals. Never log secrets,\n" +
		"configmaps, serviceaccounts/token or tokenreviews at Request or RequestResponse: that writes\n" +
		"their content to the log.",
	"controllerManager":              "kube-controller-manager settings.",
	"controllerManager.extraArgs":    "Flags added to, or overriding, the defaults (names without dashes).",
	"controllerManager.featureGates": "Feature gates merged into the component's --feature-gates.",
	"controllerManager.resources":    "Requests and limits overriding the defaults by resource name (cpu: 250m).",
	"scheduler":                      "kube-scheduler settings.",
	"scheduler.extraArgs":            "Flags added to, or overriding, the defaults (names without dashes).",
	"scheduler.featureGates":         "Feature gates merged into the component's --feature-gates.",
	"scheduler.resources":            "Requests and limits overriding the defaults by resource name (cpu: 250m).",
	"etcd":                           "Where the cluster's data lives: local (static pods run by selfkube) or external.",
	"etcd.local":                     "etcd as a static pod on each control-plane node (never self-hosted, by design).",
	"etcd.local.dataDir":             "etcd's data directory on the host.",
	"etcd.local.image":               "Overrides the etcd image.",
	"etcd.local.extraArgs":           "etcd flags added to, or overriding, the defaults.",
	"etcd.local.snapshots":           "Scheduled snapshots, taken by the node agent of every control-plane node into\n/var/lib/selfkube/etcd-snapshots (0600). Restore one with selfkube recover --from-snapshot FILE.",
	"etcd.local.snapshots.interval":  "Time between two snapshots (at least 1m; 0s turns them off).",
	"etcd.local.snapshots.keep":      "How many scheduled snapshots each node keeps.",
	"etcd.external":                  "An etcd cluster that selfkube does not manage.",
	"etcd.external.endpoints":        "https:// client URLs of the members.",
	"etcd.external.caFile":           "CA that signed the members' certificates (path on control-plane hosts).",
	"etcd.external.certFile":         "Client certificate (path on control-plane hosts).",
	"etcd.external.keyFile":          "Client key (path on control-plane hosts).",
	"certificates":                   "How keys and certificates are made.",
	"certificates.keyAlgorithm":      "ECDSA-P256, RSA-2048, RSA-3072 or RSA-4096.",
	"certificates.caValidity":        "Lifetime of a new CA certificate.",
	"certificates.validity":          "Lifetime of a new leaf certificate.",
	"certificates.renewBefore":       "Renewal window: the node agents of the control-plane nodes renew a control-plane\ncertificate (in its Secret, or etcd's and the kubeconfigs on the node) once less than\nthis is left, and roll its component. Default: 720h, or 30/365 of a shorter validity.",
	"proxy":                          "kube-proxy settings.",
	"proxy.mode":                     "iptables, ipvs or nftables.",

	"name":                 "Node name. Default: the host name.",
	"advertiseAddress":     "Address the API server on this node advertises.\nDefault: the controlPlaneEndpoint host if it is an IP, else the default-route address.",
	"nodeIP":               "The kubelet's node IP. Default: the advertise address.",
	"criSocket":            "Container runtime endpoint.",
	"labels":               "Labels put on the Node object.",
	"taints":               "Taints put on the Node object. Unset: control-plane:NoSchedule; [] for none.",
	"kubelet":              "Kubelet settings of this node.",
	"kubelet.cgroupDriver": "cgroupfs or systemd: must match the container runtime's cgroup driver.",
}

var imageDocs = []struct{ field, image string }{
	{"apiServer", ImageAPIServer}, {"controllerManager", ImageControllerManager},
	{"scheduler", ImageScheduler}, {"proxy", ImageProxy}, {"coreDNS", ImageCoreDNS},
	{"etcd", ImageEtcd}, {"pause", ImagePause}, {"selfkube", ImageSelfkube},
}

// PrintDefaults renders cfg as a YAML file of two documents, every field present and
// commented. Image overrides, empty by default, are listed as comments with the
// references they resolve to.
func PrintDefaults(cfg *Config) ([]byte, error) {
	var out bytes.Buffer
	out.WriteString("# selfkube configuration, every field with its default.\n" +
		"# Use: selfkube render --config FILE --asset-dir DIR\n")
	for i, doc := range []any{&cfg.Cluster, &cfg.Node} {
		if i > 0 {
			out.WriteString("---\n")
		}
		node, err := documented(doc)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			appendImageComment(node, &cfg.Cluster)
		}
		enc := yaml.NewEncoder(&out)
		enc.SetIndent(2)
		if err := enc.Encode(node); err != nil {
			return nil, fmt.Errorf("encoding defaults: %w", err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("encoding defaults: %w", err)
		}
	}
	return out.Bytes(), nil
}

// documented turns v into a YAML node tree in Go field order (JSON keeps it) with the
// documentation of every key as its head comment.
func documented(v any) (*yaml.Node, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding defaults: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("encoding defaults: %w", err)
	}
	root := doc.Content[0]
	annotate(root, "")
	return root, nil
}

func annotate(n *yaml.Node, prefix string) {
	n.Style = 0 // block style, not JSON's flow style
	for _, c := range n.Content {
		c.Style = 0
	}
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			annotate(c, prefix)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	// TypeMeta puts kind first (also in the inline audit policy); people expect
	// apiVersion on top.
	if c := n.Content; len(c) >= 4 && c[0].Value == "kind" && c[2].Value == "apiVersion" {
		c[0], c[1], c[2], c[3] = c[2], c[3], c[0], c[1]
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		path := key.Value
		if prefix != "" {
			path = prefix + "." + key.Value
		}
		if d, ok := fieldDocs[path]; ok {
			key.HeadComment = d
		}
		annotate(val, path)
	}
}

func appendImageComment(root *yaml.Node, c *ClusterConfiguration) {
	var b strings.Builder
	b.WriteString(fieldDocs["images"] + " Without them:")
	for _, d := range imageDocs {
		fmt.Fprintf(&b, "\n  %s: %s", d.field, c.Image(d.image))
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "images" {
			root.Content[i].HeadComment = b.String()
		}
	}
}
