package main

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

// defaultPath is the PATH of every image.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Inputs are the host paths and versions the images are built from.
type Inputs struct {
	// Repository is the image repository of every image, e.g. registry.local.
	Repository string
	// KubeadmImages are the references `kubeadm config images list` prints for that repository.
	KubeadmImages []string
	// KubeBin holds kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy.
	KubeBin string
	// EtcdBin holds etcd and etcdctl; EtcdVersion is their release, e.g. v3.6.6.
	EtcdBin, EtcdVersion string
	// ExtraEtcd are other etcd releases (upgrade targets): each one is its own tarball,
	// etcd_<3.6.16-0>.tar, with only its own tags.
	ExtraEtcd []EtcdRelease
	// CoreDNSBin holds coredns; CoreDNSVersion is its release, e.g. v1.15.0.
	CoreDNSBin, CoreDNSVersion string
	// CNIBin holds the CNI plugins copied into the selfkube image.
	CNIBin string
	// Pause is the pause binary.
	Pause string
	// IPTablesRoot is a root filesystem with iptables, conntrack and their libraries (kube-proxy).
	IPTablesRoot string
	// BusyboxRoot is a root filesystem with busybox and its applet links.
	BusyboxRoot string
	// Selfkube is the selfkube binary.
	Selfkube string
}

// EtcdRelease is an etcd release and the directory holding its etcd and etcdctl.
type EtcdRelease struct{ Version, Bin string }

// Image is one image tarball to write.
type Image struct {
	// File is the tarball's name in the images directory.
	File string
	// Tags are the full references the tarball carries; the first is the primary one.
	Tags []string
	// Contents make the image's single layer.
	Contents   []Content
	Entrypoint []string
	Cmd        []string
	Env        []string
}

// cniPlugins are the plugins the selfkube image carries in /opt/cni/bin.
var cniPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// Catalog lists every image: the ones kubeadm asks for, with exactly its tags, plus busybox and
// selfkube. A kubeadm image it does not know is an error, so a new kubeadm cannot silently go
// without one.
func Catalog(in Inputs) ([]Image, error) {
	var images []Image
	seen := map[string]bool{}
	for _, ref := range in.KubeadmImages {
		repo, tag, ok := splitRef(ref)
		if !ok {
			return nil, fmt.Errorf("kubeadm image %q has no tag", ref)
		}
		if want := in.Repository + "/"; !strings.HasPrefix(repo, want) {
			return nil, fmt.Errorf("kubeadm image %q is not in repository %s", ref, in.Repository)
		}
		name := strings.TrimPrefix(repo, in.Repository+"/")
		img, err := componentImage(in, name, tag)
		if err != nil {
			return nil, err
		}
		seen[name] = true
		images = append(images, img)
	}
	for _, want := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"} {
		if !seen[want] {
			return nil, fmt.Errorf("kubeadm did not list an image for %s: check `kubeadm config images list`", want)
		}
	}
	images = append(images,
		Image{
			File:     "busybox_latest.tar",
			Tags:     []string{in.Repository + "/busybox:latest"},
			Contents: withBase(Content{Dest: "/", Source: in.BusyboxRoot}),
			Cmd:      []string{"sh"},
			Env:      []string{defaultPath},
		},
		selfkubeImage(in),
	)
	taken := map[string]bool{}
	for _, img := range images {
		for _, t := range img.Tags {
			taken[t] = true
		}
	}
	for _, r := range in.ExtraEtcd {
		// Named by the release (etcd_v3.6.16.tar), never by kubeadm's tag form, so that
		// it cannot overwrite the pinned release's tarball; a tag another image already
		// carries is left out.
		var tags []string
		for _, t := range []string{in.Repository + "/etcd:" + r.Version, in.Repository + "/etcd:" + etcdTag(r.Version)} {
			if !taken[t] {
				tags, taken[t] = append(tags, t), true
			}
		}
		if len(tags) == 0 {
			continue
		}
		images = append(images, Image{
			File:       "etcd_" + r.Version + ".tar",
			Tags:       tags,
			Contents:   withBase(Content{Dest: "/usr/local/bin/etcd", Source: filepath.Join(r.Bin, "etcd")}, Content{Dest: "/usr/local/bin/etcdctl", Source: filepath.Join(r.Bin, "etcdctl")}),
			Entrypoint: []string{"/usr/local/bin/etcd"},
			Env:        []string{defaultPath},
		})
	}
	sort.Slice(images, func(i, j int) bool { return images[i].File < images[j].File })
	return images, nil
}

// componentImage is the image kubeadm knows as <repository>/<name>:<tag>.
func componentImage(in Inputs, name, tag string) (Image, error) {
	img := Image{
		File: name + "_" + tag + ".tar",
		Tags: []string{in.Repository + "/" + name + ":" + tag},
		Env:  []string{defaultPath},
	}
	bin := func(dir, file string) Content {
		return Content{Dest: "/usr/local/bin/" + file, Source: filepath.Join(dir, file)}
	}
	switch name {
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
		img.Contents = withBase(bin(in.KubeBin, name))
		img.Entrypoint = []string{"/usr/local/bin/" + name}
	case "kube-proxy":
		img.Contents = withBase(Content{Dest: "/", Source: in.IPTablesRoot}, bin(in.KubeBin, name))
		img.Entrypoint = []string{"/usr/local/bin/kube-proxy"}
	case "etcd":
		img.Contents = withBase(bin(in.EtcdBin, "etcd"), bin(in.EtcdBin, "etcdctl"))
		img.Entrypoint = []string{"/usr/local/bin/etcd"}
		img.Tags = appendTag(img.Tags, in.Repository+"/etcd:"+in.EtcdVersion)
		// The upstream registry's tag form (3.6.6-0), which selfkube's configuration defaults to.
		img.Tags = appendTag(img.Tags, in.Repository+"/etcd:"+etcdTag(in.EtcdVersion))
	case "coredns":
		// The upstream image runs /coredns and kubeadm's Deployment passes only args.
		img.Contents = withBase(Content{Dest: "/coredns", Source: filepath.Join(in.CoreDNSBin, "coredns")})
		img.Entrypoint = []string{"/coredns"}
		img.Tags = appendTag(img.Tags, in.Repository+"/coredns:"+in.CoreDNSVersion)
	case "pause":
		img.Contents = withBase(Content{Dest: "/pause", Source: in.Pause})
		img.Entrypoint = []string{"/pause"}
	default:
		return Image{}, fmt.Errorf("kubeadm asks for image %q, which this builder does not know: add it to hack/images/catalog.go", name)
	}
	return img, nil
}

func selfkubeImage(in Inputs) Image {
	contents := []Content{{Dest: "/usr/local/bin/selfkube", Source: in.Selfkube}}
	for _, p := range cniPlugins {
		contents = append(contents, Content{Dest: "/opt/cni/bin/" + p, Source: filepath.Join(in.CNIBin, p)})
	}
	return Image{
		File:       "selfkube_dev.tar",
		Tags:       []string{in.Repository + "/selfkube:dev"},
		Contents:   withBase(contents...),
		Entrypoint: []string{"/usr/local/bin/selfkube"},
		Env:        []string{defaultPath},
	}
}

// withBase adds what every image needs (a world-writable /tmp) after contents, so it wins.
func withBase(contents ...Content) []Content {
	return append(contents, Content{Dest: "/tmp", Mode: 0o777 | fs.ModeSticky})
}

func appendTag(tags []string, tag string) []string {
	for _, t := range tags {
		if t == tag {
			return tags
		}
	}
	return append(tags, tag)
}

// splitRef splits registry.local/pause:3.10.2 into registry.local/pause and 3.10.2.
func splitRef(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return "", "", false
	}
	return ref[:i], ref[i+1:], true
}

// etcdTag is the upstream registry's tag form of an etcd release: v3.6.6 → 3.6.6-0.
func etcdTag(version string) string { return strings.TrimPrefix(version, "v") + "-0" }
