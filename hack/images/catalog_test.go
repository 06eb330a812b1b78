package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var kubeadmV136 = []string{
	"registry.local/kube-apiserver:v1.36.3",
	"registry.local/kube-controller-manager:v1.36.3",
	"registry.local/kube-scheduler:v1.36.3",
	"registry.local/kube-proxy:v1.36.3",
	"registry.local/coredns:v1.12.4",
	"registry.local/pause:3.10.2",
	"registry.local/etcd:3.6.5-0",
}

func inputs(refs []string) Inputs {
	return Inputs{
		Repository: "registry.local", KubeadmImages: refs,
		KubeBin: "/k", EtcdBin: "/e", EtcdVersion: "v3.6.6", CoreDNSBin: "/c", CoreDNSVersion: "v1.15.0",
		CNIBin: "/cni", Pause: "/p/pause", IPTablesRoot: "/ipt", BusyboxRoot: "/bb", Selfkube: "/s/selfkube",
	}
}

func TestCatalogTags(t *testing.T) {
	images, err := Catalog(inputs(kubeadmV136))
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	got := map[string][]string{}
	for _, img := range images {
		got[img.File] = img.Tags
	}
	want := map[string][]string{
		"busybox_latest.tar":                  {"registry.local/busybox:latest"},
		"coredns_v1.12.4.tar":                 {"registry.local/coredns:v1.12.4", "registry.local/coredns:v1.15.0"},
		"etcd_3.6.5-0.tar":                    {"registry.local/etcd:3.6.5-0", "registry.local/etcd:v3.6.6", "registry.local/etcd:3.6.6-0"},
		"kube-apiserver_v1.36.3.tar":          {"registry.local/kube-apiserver:v1.36.3"},
		"kube-controller-manager_v1.36.3.tar": {"registry.local/kube-controller-manager:v1.36.3"},
		"kube-proxy_v1.36.3.tar":              {"registry.local/kube-proxy:v1.36.3"},
		"kube-scheduler_v1.36.3.tar":          {"registry.local/kube-scheduler:v1.36.3"},
		"pause_3.10.2.tar":                    {"registry.local/pause:3.10.2"},
		"selfkube_dev.tar":                    {"registry.local/selfkube:dev"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tarballs and tags (-want +got):\n%s", diff)
	}
}

// An extra etcd release (an upgrade target) is a tarball of its own, named by its
// release, with its own tags only; the pinned release's tarball keeps its tags.
func TestCatalogExtraEtcd(t *testing.T) {
	in := inputs(kubeadmV136)
	in.ExtraEtcd = []EtcdRelease{{Version: "v3.6.16", Bin: "/e16"}, {Version: "v3.6.6", Bin: "/e"}}
	images, err := Catalog(in)
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	byFile := map[string]Image{}
	for _, img := range images {
		byFile[img.File] = img
	}
	extra, ok := byFile["etcd_v3.6.16.tar"]
	if !ok {
		t.Fatalf("no etcd_v3.6.16.tar among %v", images)
	}
	if diff := cmp.Diff([]string{"registry.local/etcd:v3.6.16", "registry.local/etcd:3.6.16-0"}, extra.Tags); diff != "" {
		t.Errorf("tags of the extra etcd (-want +got):\n%s", diff)
	}
	if extra.Contents[0].Source != "/e16/etcd" {
		t.Errorf("extra etcd built from %v, want /e16/etcd", extra.Contents)
	}
	if diff := cmp.Diff([]string{"registry.local/etcd:3.6.5-0", "registry.local/etcd:v3.6.6", "registry.local/etcd:3.6.6-0"}, byFile["etcd_3.6.5-0.tar"].Tags); diff != "" {
		t.Errorf("pinned etcd's tags (-want +got):\n%s", diff)
	}
	if _, dup := byFile["etcd_v3.6.6.tar"]; dup {
		t.Error("the pinned release given again as an extra got a tarball of its own")
	}
}

func TestCatalogContents(t *testing.T) {
	images, err := Catalog(inputs(kubeadmV136))
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	byFile := map[string]Image{}
	for _, img := range images {
		byFile[img.File] = img
	}
	sources := func(img Image) map[string]string {
		m := map[string]string{}
		for _, c := range img.Contents {
			m[c.Dest] = c.Source + c.Link
		}
		return m
	}
	for _, tc := range []struct {
		file       string
		entrypoint []string
		dests      map[string]string
	}{
		{"kube-proxy_v1.36.3.tar", []string{"/usr/local/bin/kube-proxy"},
			map[string]string{"/": "/ipt", "/usr/local/bin/kube-proxy": "/k/kube-proxy", "/tmp": ""}},
		{"coredns_v1.12.4.tar", []string{"/coredns"}, map[string]string{"/coredns": "/c/coredns", "/tmp": ""}},
		{"selfkube_dev.tar", []string{"/usr/local/bin/selfkube"}, map[string]string{
			"/usr/local/bin/selfkube": "/s/selfkube", "/opt/cni/bin/bridge": "/cni/bridge",
			"/opt/cni/bin/host-local": "/cni/host-local", "/opt/cni/bin/loopback": "/cni/loopback",
			"/opt/cni/bin/portmap": "/cni/portmap", "/tmp": ""}},
	} {
		img := byFile[tc.file]
		if diff := cmp.Diff(tc.entrypoint, img.Entrypoint); diff != "" {
			t.Errorf("%s entrypoint (-want +got):\n%s", tc.file, diff)
		}
		if diff := cmp.Diff(tc.dests, sources(img)); diff != "" {
			t.Errorf("%s contents (-want +got):\n%s", tc.file, diff)
		}
	}
}

func TestCatalogRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		refs []string
		want string
	}{
		"unknown image":         {append([]string{"registry.local/kube-foo:v1"}, kubeadmV136...), "does not know"},
		"missing image":         {kubeadmV136[1:], "kube-apiserver"},
		"other repository":      {append([]string{"registry.k8s.io/pause:3.10.2"}, kubeadmV136...), "not in repository"},
		"reference without tag": {append([]string{"registry.local/pause"}, kubeadmV136...), "no tag"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Catalog(inputs(tc.refs))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Catalog error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
