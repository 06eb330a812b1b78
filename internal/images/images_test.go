package images

import (
	"slices"
	"strings"
	"testing"

	"github.com/selfkube/selfkube/internal/config"
)

func TestVersions(t *testing.T) {
	tags := []string{
		"registry.local/kube-apiserver:v1.36.3", "registry.local/kube-apiserver:v1.35.4",
		"registry.local/kube-apiserver:v1.36.1", "registry.local/kube-apiserver:v1.36.3",
		"registry.local/kube-scheduler:v1.37.0", "other.io/kube-apiserver:v1.34.0",
		"registry.local/kube-apiserver:latest",
	}
	got := Versions(tags, "registry.local")
	if want := []string{"v1.35.4", "v1.36.1", "v1.36.3"}; !slices.Equal(got, want) {
		t.Errorf("Versions = %v, want %v", got, want)
	}
}

// init's refusal names every image it lacks and why, and the versions it could run.
func TestRefusal(t *testing.T) {
	if got := Refusal("v1.36.3", nil, []string{"v1.36.3"}); got != "" {
		t.Errorf("nothing missing: %q, want no refusal", got)
	}
	got := Refusal("v1.34.0", map[string]string{
		"registry.local/kube-apiserver:v1.34.0": "rpc error: pull failed: dial tcp 127.0.0.1:443: connect: connection refused\nmore",
		"registry.local/kube-proxy:v1.34.0":     "not found",
	}, []string{"v1.35.4", "v1.36.3"})
	for _, want := range []string{
		"no images for Kubernetes v1.34.0",
		"registry.local/kube-apiserver:v1.34.0 (rpc error: pull failed: dial tcp 127.0.0.1:443: connect: connection refused)",
		"registry.local/kube-proxy:v1.34.0 (not found)",
		"versions with images here: v1.35.4, v1.36.3",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("refusal lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "more") {
		t.Errorf("refusal carries a multi-line error whole:\n%s", got)
	}
}

// The images of a version: the control plane's, the add-ons', pause and selfkube's,
// and etcd's only when selfkube runs etcd.
func TestNeeded(t *testing.T) {
	c := config.ClusterConfiguration{KubernetesVersion: "v1.35.4", EtcdVersion: "v3.6.16", ImageRepository: "registry.local",
		Etcd: config.Etcd{Local: &config.LocalEtcd{}}}
	got := Needed(&c)
	for _, want := range []string{"registry.local/kube-apiserver:v1.35.4", "registry.local/kube-proxy:v1.35.4", "registry.local/etcd:3.6.16-0"} {
		if !slices.Contains(got, want) {
			t.Errorf("Needed = %v, lacks %s", got, want)
		}
	}
	c.Etcd = config.Etcd{External: &config.ExternalEtcd{}}
	if got := Needed(&c); slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "/etcd:") }) {
		t.Errorf("external etcd: Needed = %v, want no etcd image", got)
	}
}
