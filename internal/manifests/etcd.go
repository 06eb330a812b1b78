package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/selfkube/selfkube/internal/config"
)

// The annotations of an etcd static pod that let a node agent change its extra flags
// later without the configuration it was rendered from (its mirror pod carries them, so
// the operator reads from them what each member runs):
const (
	// AnnotationEtcdFlags is the JSON of selfkube's own flags of the member (no extra).
	AnnotationEtcdFlags = "selfkube.io/etcd-flags"
	// AnnotationEtcdExtraArgs is the JSON of the extra flags it runs with ({} if none):
	// canonical (encoding/json sorts keys), so that two equal sets compare equal as text.
	AnnotationEtcdExtraArgs = "selfkube.io/etcd-extra-args"
	// EtcdLabelComponent is the label (and value) of etcd's static pods and mirror pods.
	EtcdLabelComponent = labelLegacyComponent
	// EtcdSnapshotDir is where the node agents keep etcd snapshots on control-plane
	// nodes.
	EtcdSnapshotDir = "/var/lib/selfkube/etcd-snapshots"
)

// EtcdComponent is the value of EtcdLabelComponent on etcd's pods.
const EtcdComponent = nameEtcd

// EtcdExtraArgsText is the canonical text of extra flags, as AnnotationEtcdExtraArgs
// holds them.
func EtcdExtraArgsText(extra map[string]string) string {
	if extra == nil {
		extra = map[string]string{}
	}
	b, err := json.Marshal(extra)
	if err != nil { // a map of strings always marshals
		panic(err)
	}
	return string(b)
}

// annotateEtcd records base and extra flags on an etcd pod.
func annotateEtcd(p *corev1.Pod, base flags, extra map[string]string) {
	b, err := json.Marshal(map[string]string(base))
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[AnnotationEtcdFlags] = string(b)
	p.Annotations[AnnotationEtcdExtraArgs] = EtcdExtraArgsText(extra)
}

// EtcdWith returns the etcd static pod p with extra in place of the extra flags it has
// and, unless image is empty, that image (an etcd version): its command is rendered
// again from the flags recorded on it (AnnotationEtcdFlags), nothing else changes. It
// refuses extra flags that selfkube owns (config.EtcdOwnFlags), and a pod not rendered
// by selfkube. p is not changed.
func EtcdWith(p *corev1.Pod, extra map[string]string, image string) (*corev1.Pod, error) {
	if errs := config.ValidateEtcdExtraArgs(extra, nil); len(errs) > 0 {
		return nil, fmt.Errorf("etcd extra flags: %w", errs.ToAggregate())
	}
	raw, ok := p.Annotations[AnnotationEtcdFlags]
	if !ok {
		return nil, fmt.Errorf("pod %s has no %s annotation: it was not rendered by this version of selfkube", p.Name, AnnotationEtcdFlags)
	}
	var base flags
	if err := json.Unmarshal([]byte(raw), &base); err != nil {
		return nil, fmt.Errorf("pod %s: reading %s: %w", p.Name, AnnotationEtcdFlags, err)
	}
	i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == nameEtcd })
	if i < 0 {
		return nil, fmt.Errorf("pod %s has no %s container", p.Name, nameEtcd)
	}
	out := p.DeepCopy()
	out.Spec.Containers[i].Command = base.command("etcd", extra)
	if image != "" {
		out.Spec.Containers[i].Image = image
	}
	annotateEtcd(out, base, maps.Clone(extra))
	return out, nil
}

// EtcdImage is the image of the etcd container of p ("" when it has none).
func EtcdImage(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == nameEtcd {
			return c.Image
		}
	}
	return ""
}

// EtcdMember is what an etcd static pod rendered by selfkube says about its member,
// read from the flags recorded on it (AnnotationEtcdFlags).
type EtcdMember struct {
	Name    string
	DataDir string
	// PeerURL is the first peer URL it advertises.
	PeerURL string
	// ClientURL is the first client URL it listens on (loopback first, as rendered);
	// AdvertisedClientURL the first it advertises to others.
	ClientURL, AdvertisedClientURL string
}

// EtcdMemberOf reads the member of the etcd pod p (a static pod or its mirror pod).
func EtcdMemberOf(p *corev1.Pod) (EtcdMember, error) {
	var f map[string]string
	if err := json.Unmarshal([]byte(p.Annotations[AnnotationEtcdFlags]), &f); err != nil {
		return EtcdMember{}, fmt.Errorf("the etcd pod %s has no readable %s annotation (was it rendered by selfkube?): %w", p.Name, AnnotationEtcdFlags, err)
	}
	first := func(flag string) string { return strings.Split(f[flag], ",")[0] }
	m := EtcdMember{Name: f["name"], DataDir: f["data-dir"], PeerURL: first("initial-advertise-peer-urls"),
		ClientURL: first("listen-client-urls"), AdvertisedClientURL: first("advertise-client-urls")}
	for flag, v := range map[string]string{"name": m.Name, "data-dir": m.DataDir, "initial-advertise-peer-urls": m.PeerURL, "listen-client-urls": m.ClientURL} {
		if v == "" {
			return EtcdMember{}, fmt.Errorf("the etcd pod %s has no --%s", p.Name, flag)
		}
	}
	return m, nil
}

// EtcdForcingNewCluster returns the etcd static pod p with --force-new-cluster added to
// its command: the member starts as the only member of a cluster that keeps its data.
// Its extra flags, image and annotations stay p's. It is for one start only: once the
// member serves, p goes back in its place (a member restarted with the flag again would
// forget members added since).
func EtcdForcingNewCluster(p *corev1.Pod) (*corev1.Pod, error) {
	var base flags
	if err := json.Unmarshal([]byte(p.Annotations[AnnotationEtcdFlags]), &base); err != nil {
		return nil, fmt.Errorf("pod %s: reading %s: %w", p.Name, AnnotationEtcdFlags, err)
	}
	extra := map[string]string{}
	if err := json.Unmarshal([]byte(p.Annotations[AnnotationEtcdExtraArgs]), &extra); err != nil {
		return nil, fmt.Errorf("pod %s: reading %s: %w", p.Name, AnnotationEtcdExtraArgs, err)
	}
	i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == nameEtcd })
	if i < 0 {
		return nil, fmt.Errorf("pod %s has no %s container", p.Name, nameEtcd)
	}
	forced := maps.Clone(base)
	forced["force-new-cluster"] = "true"
	out := p.DeepCopy()
	out.Spec.Containers[i].Command = forced.command("etcd", extra)
	return out, nil
}
