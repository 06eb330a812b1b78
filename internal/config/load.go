package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// LoadFile reads, decodes, defaults and validates a configuration file. An empty path
// means "all defaults".
func LoadFile(path string, host Host) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading configuration: %w", err)
		}
	}
	cfg, err := Decode(data)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	Default(cfg, host)
	if errs := Validate(cfg); len(errs) > 0 {
		where := "configuration"
		if path != "" {
			where = path
		}
		return nil, fmt.Errorf("%s is not valid:\n  %s\nfix the fields above (see `selfkube config print-defaults` for every field)",
			where, strings.ReplaceAll(errs.ToAggregate().Error(), ", ", "\n  "))
	}
	return cfg, nil
}

// Decode strictly decodes the YAML documents of a configuration file. It accepts at most
// one ClusterConfiguration and one NodeConfiguration; unknown fields, duplicate fields,
// unknown kinds and other API versions are errors.
func Decode(data []byte) (*Config, error) {
	cfg := &Config{}
	seen := map[string]bool{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading YAML document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d is not valid YAML: %w", i, err)
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if tm.APIVersion != APIVersion {
			return nil, fmt.Errorf("document %d: apiVersion %q is not supported: use %q", i, tm.APIVersion, APIVersion)
		}
		var target any
		switch tm.Kind {
		case KindCluster:
			target = &cfg.Cluster
		case KindNode:
			target = &cfg.Node
		default:
			return nil, fmt.Errorf("document %d: kind %q is not supported: use %s or %s", i, tm.Kind, KindCluster, KindNode)
		}
		if seen[tm.Kind] {
			return nil, fmt.Errorf("document %d: a second %s: a file holds at most one of each kind", i, tm.Kind)
		}
		seen[tm.Kind] = true
		strict, err := kjson.UnmarshalStrict(js, target, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		if len(strict) > 0 {
			msgs := make([]string, 0, len(strict))
			for _, e := range strict {
				msgs = append(msgs, e.Error())
			}
			return nil, fmt.Errorf("document %d (%s): %s: check the spelling against `selfkube config print-defaults`",
				i, tm.Kind, strings.Join(msgs, "; "))
		}
	}
	return cfg, nil
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// DetectHost reads the host facts defaulting needs: the host name and the first address
// of the interface that holds the IPv4 default route (from /proc/net/route).
func DetectHost() Host {
	h := Host{}
	if name, err := os.Hostname(); err == nil {
		h.Hostname = name
	}
	routes, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return h
	}
	for _, line := range strings.Split(string(routes), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				h.DefaultAddress = ipn.IP.String()
				return h
			}
		}
	}
	return h
}
