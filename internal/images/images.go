// Package images tells whether this node's container runtime has (or can pull) the
// images a Kubernetes version needs, and which versions it has images for: init
// refuses a version it cannot run, naming the ones it could.
package images

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/selfkube/selfkube/internal/config"
)

// Needed are the images a cluster of cfg runs on its first control-plane node.
func Needed(c *config.ClusterConfiguration) []string {
	names := []string{config.ImageAPIServer, config.ImageControllerManager, config.ImageScheduler, config.ImageProxy,
		config.ImageCoreDNS, config.ImagePause, config.ImageSelfkube}
	if c.Etcd.Local != nil {
		names = append(names, config.ImageEtcd)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, c.Image(n))
	}
	return out
}

// Runtime is the image service of a CRI runtime.
type Runtime struct {
	conn   *grpc.ClientConn
	images runtimeapi.ImageServiceClient
}

// Dial connects to a CRI endpoint such as unix:///run/containerd/containerd.sock.
func Dial(endpoint string) (*Runtime, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		endpoint = "unix://" + endpoint
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to the container runtime at %s: %w", endpoint, err)
	}
	return &Runtime{conn: conn, images: runtimeapi.NewImageServiceClient(conn)}, nil
}

// Close closes the connection.
func (r *Runtime) Close() error { return r.conn.Close() }

// Ensure makes sure every image in refs is on this node, pulling those that are not
// (each within pullTimeout). It returns the images neither present nor pullable, with
// why, and the Kubernetes versions of repository whose kube-apiserver images are here.
func (r *Runtime) Ensure(ctx context.Context, refs []string, repository string, pullTimeout time.Duration) (missing map[string]string, versions []string, err error) {
	missing = map[string]string{}
	for _, ref := range refs {
		st, err := r.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil {
			return nil, nil, fmt.Errorf("asking the container runtime for %s: %w", ref, err)
		}
		if st.Image != nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, pullTimeout)
		_, perr := r.images.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		cancel()
		if perr != nil {
			missing[ref] = perr.Error()
		}
	}
	list, err := r.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("listing the container runtime's images: %w", err)
	}
	var tags []string
	for _, img := range list.Images {
		tags = append(tags, img.RepoTags...)
	}
	return missing, Versions(tags, repository), nil
}

// Versions are the Kubernetes versions (v1.36.3) of the kube-apiserver images of
// repository among tags, oldest first.
func Versions(tags []string, repository string) []string {
	prefix := repository + "/" + config.ImageAPIServer + ":"
	var vs []*utilversion.Version
	seen := map[string]bool{}
	for _, t := range tags {
		v, ok := strings.CutPrefix(t, prefix)
		if !ok || seen[v] {
			continue
		}
		if parsed, err := utilversion.ParseSemantic(v); err == nil && strings.HasPrefix(v, "v") {
			seen[v] = true
			vs = append(vs, parsed)
		}
	}
	slices.SortFunc(vs, func(a, b *utilversion.Version) int {
		switch {
		case a.LessThan(b):
			return -1
		case b.LessThan(a):
			return 1
		}
		return 0
	})
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, "v"+v.String())
	}
	return out
}

// Refusal is the error init gives when images are missing: what is missing and why,
// and the versions this node could run instead ("" when nothing is missing).
func Refusal(version string, missing map[string]string, versions []string) string {
	if len(missing) == 0 {
		return ""
	}
	refs := slices.Sorted(func(yield func(string) bool) {
		for r := range missing {
			if !yield(r) {
				return
			}
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "this node has no images for Kubernetes %s and could not pull them:", version)
	for _, r := range refs {
		fmt.Fprintf(&b, "\n    %s (%s)", r, firstLine(missing[r]))
	}
	if len(versions) == 0 {
		b.WriteString("\n  it has images of no Kubernetes version: load them (ctr -n k8s.io images import) or make a registry reachable")
	} else {
		fmt.Fprintf(&b, "\n  versions with images here: %s (set kubernetesVersion to one of them, or load the images of %s)",
			strings.Join(versions, ", "), version)
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
