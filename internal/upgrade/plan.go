package upgrade

// `selfkube upgrade plan`: what a change of the ControlPlane's spec would change, and
// what stands in its way. Read gathers what a plan is made of (it only reads); PlanFor
// is the plan, a pure function of that and the changes.

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
)

// Observed is what a plan is made of, as Read found it in the cluster.
type Observed struct {
	ControlPlane *controlplane.ControlPlane
	// Cluster is the published cluster configuration (kube-system/selfkube-config): the
	// spec's fields take the place of its own, as the operator renders them.
	Cluster config.ClusterConfiguration
	Nodes   []corev1.Node
	// Controller is the selfkube-controller Deployment, nil when there is none.
	Controller *appsv1.Deployment
}

// Read reads what a plan is made of; it writes nothing.
func Read(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface) (Observed, error) {
	var obs Observed
	u, err := dyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
	if err != nil {
		return obs, fmt.Errorf("reading the ControlPlane %s: %w (was this cluster made by selfkube init?)", controlplane.Name, err)
	}
	if obs.ControlPlane, err = controlplane.FromUnstructured(u); err != nil {
		return obs, err
	}
	if obs.Cluster, err = manifests.ReadClusterConfig(ctx, client); err != nil {
		return obs, fmt.Errorf("%w (the operator renders the control plane from it)", err)
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return obs, fmt.Errorf("listing the nodes: %w", err)
	}
	obs.Nodes = nodes.Items
	obs.Controller, err = client.AppsV1().Deployments(manifests.Namespace).Get(ctx, manifests.ControllerName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obs.Controller, err = nil, nil
	}
	if err != nil {
		return obs, fmt.Errorf("reading the Deployment %s/%s: %w", manifests.Namespace, manifests.ControllerName, err)
	}
	return obs, nil
}

// Plan is what a change of the spec (or the spec as it is) would do.
type Plan struct {
	// Generation of the ControlPlane's spec, and LastKnownGood the generation that last
	// ran healthy on every component (0: none yet).
	Generation    int64 `json:"generation"`
	LastKnownGood int64 `json:"lastKnownGoodGeneration,omitempty"`
	// Edited says the plan is of --set/--unset edits, and Changes are the fields they
	// change in the spec. Otherwise the plan is of the spec as it is, and Changes are the
	// fields in which it differs from the last-known-good spec: what is not rolled out.
	Edited     bool            `json:"edited"`
	Changes    []FieldChange   `json:"changes"`
	Components []ComponentPlan `json:"components"`
	// Available are the Kubernetes versions, other than the running one, whose images
	// every node has (see AvailableVersion), oldest first; AvailableEtcd the etcd
	// releases (v3.6.16), other than the running one, whose image every control-plane
	// node has.
	Available     []AvailableVersion `json:"available"`
	AvailableEtcd []string           `json:"availableEtcd"`
	Checks        []Check            `json:"checks"`
	// Blocked is true when a check blocks (Result Block).
	Blocked bool `json:"blocked"`
}

// FieldChange is one field of the spec, by dotted path below spec; From or To is nil
// where the field is not set.
type FieldChange struct {
	Path string  `json:"path"`
	From *string `json:"from,omitempty"`
	To   *string `json:"to,omitempty"`
}

// ComponentPlan is one component: the image it runs and the one it would run.
type ComponentPlan struct {
	Name string `json:"name"`
	// Image the component runs, as the operator last saw it ("" when not seen yet).
	Image string `json:"image"`
	// Ready and Desired pods, as the operator last saw them.
	Ready   int32 `json:"ready"`
	Desired int32 `json:"desired"`
	// TargetImage is the image the planned spec renders.
	TargetImage string `json:"targetImage"`
	// Settings says the planned change touches the component's flags, feature gates or
	// resources.
	Settings bool `json:"settings"`
}

// AvailableVersion is a Kubernetes version whose images are on every node, in the
// planned spec's image repository: kube-apiserver, kube-controller-manager and
// kube-scheduler on every control-plane node (every node when none is labelled
// control-plane) and kube-proxy on every node.
type AvailableVersion struct {
	Version string `json:"version"`
	// Allowed says the version and kubelets checks pass for going to it from the
	// running version; Reason says why not.
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"`
}

// Check is one thing a change is judged by.
type Check struct {
	Name    string `json:"name"`
	Result  Result `json:"result"`
	Message string `json:"message"`
}

// Result of a check.
type Result string

// The results: Pass, Warn (worth knowing; does not block) and Block.
const (
	Pass  Result = "pass"
	Warn  Result = "warn"
	Block Result = "block"
)

// specField is where each component's settings are in the spec.
var specField = map[string]string{
	"etcd":                    "etcd",
	"kube-apiserver":          "apiServer",
	"kube-controller-manager": "controllerManager",
	"kube-scheduler":          "scheduler",
	"kube-proxy":              "kubeProxy",
	"coredns":                 "coreDNS",
}

// PlanFor plans changes to obs's ControlPlane; with no changes it plans the spec as it
// is. It does no I/O. An error is returned only when the spec cannot be read at all; a
// change that is not valid is a blocking check.
func PlanFor(obs Observed, changes []Change) (*Plan, error) {
	cp := obs.ControlPlane
	p := &Plan{Generation: cp.Generation, Edited: len(changes) > 0, Changes: []FieldChange{}, Components: []ComponentPlan{},
		Available: []AvailableVersion{}, AvailableEtcd: []string{}}
	if lkg := cp.Status.LastKnownGood; lkg != nil {
		p.LastKnownGood = lkg.Generation
	}

	// current is what runs healthy; target is what the plan would have run; base is
	// what Changes are counted from.
	current, base, target := cp.Spec, cp.Spec, cp.Spec
	if lkg := cp.Status.LastKnownGood; lkg != nil {
		current = lkg.Spec
		if !p.Edited {
			base = lkg.Spec
		}
	}
	var editErr error
	if p.Edited {
		var err error
		target, editErr, err = edited(cp.Spec, changes)
		if err != nil {
			return nil, err
		}
	}
	var err error
	if p.Changes, err = fieldChanges(base, target); err != nil {
		return nil, err
	}

	configured := target.Configure(obs.Cluster)
	names := controlplane.Components
	if len(cp.Status.Components) > 0 {
		names = nil
		for _, c := range cp.Status.Components {
			names = append(names, c.Name)
		}
	}
	for _, name := range names {
		if name == controlplane.ComponentEtcd && obs.Cluster.Etcd.Local == nil {
			continue // an external etcd is not selfkube's
		}
		if name == controlplane.ComponentPodNetwork && obs.Cluster.Networking.Plugin != config.NetworkPluginSelfkube {
			continue // the cluster's pod network is not selfkube's
		}
		image := name
		if name == controlplane.ComponentPodNetwork {
			image = config.ImageSelfkube // the pod network runs selfkube's own image
		}
		c := ComponentPlan{Name: name, TargetImage: configured.Image(image)}
		if i := slices.IndexFunc(cp.Status.Components, func(s controlplane.ComponentStatus) bool { return s.Name == name }); i >= 0 {
			s := cp.Status.Components[i]
			c.Image, c.Ready, c.Desired = s.Image, s.Ready, s.Desired
		}
		if f, ok := specField[name]; ok {
			c.Settings = slices.ContainsFunc(p.Changes, func(fc FieldChange) bool {
				return strings.HasPrefix(fc.Path, f+".") && fc.Path != f+".image" && fc.Path != f+".version"
			})
		}
		p.Components = append(p.Components, c)
	}

	kubelets := kubeletsOf(obs.Nodes)
	controlPlane := controlPlaneNodes(obs.Nodes)
	p.Available = availableVersions(obs.Nodes, controlPlane, configured.ImageRepository, current.KubernetesVersion, kubelets)
	if obs.Cluster.Etcd.Local != nil {
		running := current.Configure(obs.Cluster)
		etcd := running.Image(config.ImageEtcd)
		if i := slices.IndexFunc(cp.Status.Components, func(s controlplane.ComponentStatus) bool {
			return s.Name == controlplane.ComponentEtcd && s.Image != ""
		}); i >= 0 {
			etcd = cp.Status.Components[i].Image
		}
		p.AvailableEtcd = availableEtcd(controlPlane, configured.ImageRepository, etcd)
	}

	p.Checks = append(p.Checks, specCheck(target, editErr))
	if target.Etcd.Version != "" && obs.Cluster.Etcd.Local != nil {
		// etcd's release goes within a minor only (a rollback must be able to start).
		from := cmp.Or(current.Etcd.Version, obs.Cluster.EtcdVersion)
		if why := controlplane.EtcdVersionChange(from, target.Etcd.Version); why != "" {
			p.Checks = append(p.Checks, Check{Name: "etcd version", Result: Block, Message: why})
		} else if from != target.Etcd.Version {
			p.Checks = append(p.Checks, Check{Name: "etcd version", Result: Pass,
				Message: fmt.Sprintf("%s → %s, one member at a time", from, target.Etcd.Version)})
		}
	}
	version, kubeletsChecked := skewChecks(current.KubernetesVersion, target.KubernetesVersion, kubelets)
	p.Checks = append(p.Checks, version, kubeletsChecked, removedFlagsCheck(current.KubernetesVersion, target.KubernetesVersion, target))
	if _, err := utilversion.ParseGeneric(target.KubernetesVersion); err == nil &&
		target.KubernetesVersion != current.KubernetesVersion && len(obs.Nodes) > 0 {
		p.Checks = append(p.Checks, imagesCheck(configured, obs.Nodes, controlPlane))
	}
	p.Checks = append(p.Checks, rolloutChecks(cp, p.Edited)...)
	p.Checks = append(p.Checks, operatorCheck(obs.Controller))
	p.Blocked = slices.ContainsFunc(p.Checks, func(c Check) bool { return c.Result == Block })
	return p, nil
}

// edited is spec with changes made the way Apply makes them (on the unstructured spec):
// editErr says which changes could not be made; err that the result is not a spec.
func edited(spec controlplane.Spec, changes []Change) (out controlplane.Spec, editErr, err error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&spec)
	if err != nil {
		return out, nil, fmt.Errorf("converting the spec: %w", err)
	}
	editErr = Edit(content, changes)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(content, &out); err != nil {
		return out, editErr, fmt.Errorf("the changed spec is not a spec: %w", err)
	}
	return out, editErr, nil
}

// fieldChanges lists the fields that differ between before and after, by path.
func fieldChanges(before, after controlplane.Spec) ([]FieldChange, error) {
	a, err := flatten(before)
	if err != nil {
		return nil, err
	}
	b, err := flatten(after)
	if err != nil {
		return nil, err
	}
	var paths []string
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	out := []FieldChange{}
	for _, p := range paths {
		old, hadOld := a[p]
		cur, hasCur := b[p]
		if hadOld && hasCur && old == cur {
			continue
		}
		c := FieldChange{Path: p}
		if hadOld {
			c.From = &old
		}
		if hasCur {
			c.To = &cur
		}
		out = append(out, c)
	}
	return out, nil
}

func specCheck(target controlplane.Spec, editErr error) Check {
	var problems []string
	if editErr != nil {
		problems = strings.Split(editErr.Error(), "\n")
	}
	for _, e := range target.Validate() {
		problems = append(problems, e.Error())
	}
	if len(problems) > 0 {
		return Check{Name: "spec", Result: Block, Message: "not valid: " + strings.Join(problems, "; ")}
	}
	return Check{Name: "spec", Result: Pass, Message: "valid"}
}

// Kubelet is one node's kubelet.
type Kubelet struct {
	Node         string
	Version      string
	ControlPlane bool
}

// String names the node: "node n1", "control-plane node cp1".
func (k Kubelet) String() string {
	if k.ControlPlane {
		return "control-plane node " + k.Node
	}
	return "node " + k.Node
}

func kubeletsOf(nodes []corev1.Node) []Kubelet {
	var out []Kubelet
	for _, n := range nodes {
		_, cp := n.Labels[node.LabelControlPlane]
		out = append(out, Kubelet{Node: n.Name, Version: n.Status.NodeInfo.KubeletVersion, ControlPlane: cp})
	}
	slices.SortFunc(out, func(a, b Kubelet) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// controlPlaneNodes are the nodes labelled control-plane, or every node when none is.
func controlPlaneNodes(nodes []corev1.Node) []corev1.Node {
	var out []corev1.Node
	for _, n := range nodes {
		if _, ok := n.Labels[node.LabelControlPlane]; ok {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nodes
	}
	return out
}

// imagesOn is the image references a node's kubelet lists in its status; one that names
// both a tag and a digest ("<name>:<tag>@sha256:…") counts as "<name>:<tag>" too.
// A kubelet lists only its largest images (50 by default: nodeStatusMaxImages), so an
// image missing from the list may still be on the node.
func imagesOn(n corev1.Node) map[string]bool {
	out := map[string]bool{}
	for _, img := range n.Status.Images {
		for _, name := range img.Names {
			out[name] = true
			if ref, _, ok := strings.Cut(name, "@"); ok && strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
				out[ref] = true
			}
		}
	}
	return out
}

// controlPlaneImages are the images of a Kubernetes version every control-plane node
// must have (and config.ImageProxy every node).
var controlPlaneImages = []string{config.ImageAPIServer, config.ImageControllerManager, config.ImageScheduler}

// kubernetesTag is what a tag of a Kubernetes release looks like (the CRD's pattern of
// kubernetesVersion).
var kubernetesTag = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// availableVersions are the Kubernetes versions other than current whose images every
// node has in repo (see AvailableVersion), oldest first, each judged by skewChecks for a
// change from current.
func availableVersions(nodes, controlPlane []corev1.Node, repo, current string, kubelets []Kubelet) []AvailableVersion {
	out := []AvailableVersion{}
	if len(controlPlane) == 0 {
		return out
	}
	images := map[string]map[string]bool{}
	for _, n := range nodes {
		images[n.Name] = imagesOn(n)
	}
	everyNodeHas := func(nodes []corev1.Node, names []string, tag string) bool {
		for _, n := range nodes {
			for _, name := range names {
				if !images[n.Name][repo+"/"+name+":"+tag] {
					return false
				}
			}
		}
		return true
	}
	running, _ := utilversion.ParseSemantic(current)
	type found struct {
		tag     string
		version *utilversion.Version
	}
	var versions []found
	prefix := repo + "/" + config.ImageAPIServer + ":"
	for ref := range images[controlPlane[0].Name] {
		tag, ok := strings.CutPrefix(ref, prefix)
		if !ok || !kubernetesTag.MatchString(tag) || tag == current {
			continue
		}
		v, err := utilversion.ParseSemantic(tag)
		if err != nil || running != nil && v.EqualTo(running) {
			continue
		}
		if everyNodeHas(controlPlane, controlPlaneImages, tag) && everyNodeHas(nodes, []string{config.ImageProxy}, tag) {
			versions = append(versions, found{tag, v})
		}
	}
	slices.SortFunc(versions, func(a, b found) int {
		if c := compareVersions(a.version, b.version); c != 0 {
			return c
		}
		return strings.Compare(a.tag, b.tag)
	})
	for _, f := range versions {
		av := AvailableVersion{Version: f.tag, Allowed: true}
		version, kubelet := skewChecks(current, f.tag, kubelets)
		var reasons []string
		for _, c := range []Check{version, kubelet} {
			if c.Result == Block {
				av.Allowed = false
				reasons = append(reasons, c.Message)
			}
		}
		av.Reason = strings.Join(reasons, "; ")
		out = append(out, av)
	}
	return out
}

// etcdTag is what a tag of an etcd image looks like: 3.6.16-0 (registry.k8s.io's) or
// v3.6.16 (etcd's own); the release is v3.6.16 either way.
var etcdTag = regexp.MustCompile(`^(?:([0-9]+\.[0-9]+\.[0-9]+)-[0-9]+|v([0-9]+\.[0-9]+\.[0-9]+))$`)

// etcdRelease is the etcd release an image tag names, "" when it names none.
func etcdRelease(tag string) string {
	m := etcdTag.FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	return "v" + m[1] + m[2]
}

// tagOf is the tag of an image reference, "" when it has none.
func tagOf(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	name := ref[strings.LastIndex(ref, "/")+1:]
	if _, tag, ok := strings.Cut(name, ":"); ok {
		return tag
	}
	return ""
}

// availableEtcd are the etcd releases, other than the running image's, whose image in
// repo every control-plane node has, oldest first.
func availableEtcd(controlPlane []corev1.Node, repo, runningImage string) []string {
	out := []string{}
	prefix := repo + "/" + config.ImageEtcd + ":"
	running := etcdRelease(tagOf(runningImage))
	count := map[string]int{} // of the control-plane nodes that have the release
	for _, n := range controlPlane {
		releases := map[string]bool{}
		for ref := range imagesOn(n) {
			if tag, ok := strings.CutPrefix(ref, prefix); ok {
				if r := etcdRelease(tag); r != "" {
					releases[r] = true
				}
			}
		}
		for r := range releases {
			count[r]++
		}
	}
	var found []*utilversion.Version
	for r, n := range count {
		if n < len(controlPlane) || r == running {
			continue
		}
		if v, err := utilversion.ParseSemantic(r); err == nil {
			found = append(found, v)
		}
	}
	slices.SortFunc(found, compareVersions)
	for _, v := range found {
		out = append(out, "v"+v.String())
	}
	return out
}

func compareVersions(a, b *utilversion.Version) int {
	switch {
	case a.LessThan(b):
		return -1
	case b.LessThan(a):
		return 1
	}
	return 0
}

// imagesCheck warns when a node lacks an image that the planned spec (configured)
// renders for a new Kubernetes version: kube-apiserver, kube-controller-manager and
// kube-scheduler on each control-plane node, kube-proxy on every node. It does not
// block: the kubelet pulls what it lacks, if it can reach the registry.
func imagesCheck(configured config.ClusterConfiguration, nodes, controlPlane []corev1.Node) Check {
	var cpRefs []string
	for _, name := range controlPlaneImages {
		cpRefs = append(cpRefs, configured.Image(name))
	}
	// kube-proxy runs on every node, and CoreDNS, which follows the release too, may be
	// scheduled on any.
	everywhere := []string{configured.Image(config.ImageProxy), configured.Image(config.ImageCoreDNS)}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	var lacking []string
	for _, n := range sorted {
		refs := everywhere
		if slices.ContainsFunc(controlPlane, func(cp corev1.Node) bool { return cp.Name == n.Name }) {
			refs = append(slices.Clone(cpRefs), everywhere...)
		}
		images := imagesOn(n)
		var lacks []string
		for _, ref := range refs {
			if !images[ref] {
				lacks = append(lacks, ref)
			}
		}
		if len(lacks) > 0 {
			_, cp := n.Labels[node.LabelControlPlane]
			lacking = append(lacking, fmt.Sprintf("%s lacks %s", Kubelet{Node: n.Name, ControlPlane: cp}, strings.Join(lacks, ", ")))
		}
	}
	if len(lacking) == 0 {
		return Check{Name: "images", Result: Pass, Message: "every node has the images of " + configured.KubernetesVersion}
	}
	return Check{Name: "images", Result: Warn, Message: strings.Join(lacking, "; ") +
		": the kubelet pulls what its node lacks when the roll-out reaches it, if it can reach the registry " +
		"(a kubelet lists only its 50 largest images by default: the image may be there)"}
}

// maxKubeletLag is how many minor versions a kubelet may be older than kube-apiserver
// (Kubernetes' version-skew policy); it may never be newer.
const maxKubeletLag = 3

// skewChecks judges a change of the control plane's version from current to target by
// Kubernetes' version-skew policy: the control plane goes up one minor version at a
// time, never down a minor nor to another major (patch releases within a minor go
// either way); and every kubelet must be at most maxKubeletLag minor versions older
// than the target and not newer.
func skewChecks(current, target string, kubelets []Kubelet) (version, kubelet Check) {
	to, err := utilversion.ParseGeneric(target)
	if err != nil {
		return Check{Name: "version", Result: Block, Message: fmt.Sprintf("kubernetesVersion %q is not a version", target)},
			Check{Name: "kubelets", Result: Warn, Message: "not checked: the target kubernetesVersion is not a version"}
	}
	return versionCheck(current, target, to), kubeletCheck(target, to, kubelets)
}

func versionCheck(current, target string, to *utilversion.Version) Check {
	c := Check{Name: "version", Result: Pass}
	from, err := utilversion.ParseGeneric(current)
	if err != nil {
		c.Result, c.Message = Warn, fmt.Sprintf("the running kubernetesVersion %q is not a version: the change is not checked against it", current)
		return c
	}
	minor := func(v *utilversion.Version) string { return fmt.Sprintf("v%d.%d", v.Major(), v.Minor()) }
	change := current + " → " + target
	switch {
	case current == target:
		c.Message = "stays " + current
	case from.Major() != to.Major():
		c.Result, c.Message = Block, change+": a change of major version is not supported"
	case to.Minor() < from.Minor():
		c.Result, c.Message = Block, fmt.Sprintf("%s goes down a minor version, which Kubernetes does not support "+
			"(objects stored by %s may not read back); stay on %s", change, minor(from), minor(from))
	case to.Minor() > from.Minor()+1:
		c.Result, c.Message = Block, fmt.Sprintf("%s skips %s: go up one minor version at a time (%s first)",
			change, skipped(from, to), minor(from.WithMinor(from.Minor()+1)))
	case to.Minor() == from.Minor()+1:
		c.Message = change + ": one minor version up"
	default:
		c.Message = change + ": a patch release within " + minor(from)
	}
	return c
}

// skipped names the minor versions strictly between from and to.
func skipped(from, to *utilversion.Version) string {
	var out []string
	for m := from.Minor() + 1; m < to.Minor(); m++ {
		out = append(out, fmt.Sprintf("v%d.%d", from.Major(), m))
	}
	return strings.Join(out, ", ")
}

func kubeletCheck(target string, to *utilversion.Version, kubelets []Kubelet) Check {
	c := Check{Name: "kubelets", Result: Pass}
	if len(kubelets) == 0 {
		c.Result, c.Message = Warn, "no nodes found: no kubelet was checked"
		return c
	}
	var blocks, warns []string
	var oldest, newest string
	var oldestV, newestV *utilversion.Version
	for _, k := range kubelets {
		v, err := utilversion.ParseGeneric(k.Version)
		if err != nil {
			warns = append(warns, fmt.Sprintf("%s's kubelet version %q is not a version", k, k.Version))
			continue
		}
		switch {
		case v.Major() > to.Major() || v.Major() == to.Major() && v.Minor() > to.Minor():
			blocks = append(blocks, fmt.Sprintf("%s's kubelet %s is newer than the control plane would be (%s); "+
				"a kubelet may not be newer than kube-apiserver", k, k.Version, target))
		case v.Major() < to.Major() || to.Minor()-v.Minor() > maxKubeletLag:
			blocks = append(blocks, fmt.Sprintf("%s's kubelet %s is more than %d minor versions older than %s: upgrade that kubelet first",
				k, k.Version, maxKubeletLag, target))
		}
		if oldestV == nil || v.LessThan(oldestV) {
			oldest, oldestV = k.Version, v
		}
		if newestV == nil || newestV.LessThan(v) {
			newest, newestV = k.Version, v
		}
	}
	switch {
	case len(blocks) > 0:
		c.Result, c.Message = Block, strings.Join(append(blocks, warns...), "; ")
	case len(warns) > 0:
		c.Result, c.Message = Warn, strings.Join(warns, "; ")
	default:
		span := oldest
		if oldest != newest {
			span += " to " + newest
		}
		cp := 0
		for _, k := range kubelets {
			if k.ControlPlane {
				cp++
			}
		}
		c.Message = fmt.Sprintf("%d %s (%d control-plane), %s: none newer than %s, none more than %d minor versions older",
			len(kubelets), plural(len(kubelets), "node", "nodes"), cp, span, target, maxKubeletLag)
	}
	return c
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// rolloutChecks say what the operator is doing, as cp's status tells; edited says the
// plan is of a change to the spec.
func rolloutChecks(cp *controlplane.ControlPlane, edited bool) []Check {
	st := cp.Status
	var out []Check
	warn := func(msg string) { out = append(out, Check{Name: "roll-out", Result: Warn, Message: msg}) }
	if st.ObservedGeneration < cp.Generation {
		if st.ObservedGeneration == 0 {
			warn("the operator has not looked at the ControlPlane yet: is selfkube-controller running?")
		} else {
			warn(fmt.Sprintf("the operator has not seen the latest spec (generation %d; it last saw %d): is selfkube-controller running?",
				cp.Generation, st.ObservedGeneration))
		}
	}
	progressing := meta.FindStatusCondition(st.Conditions, controlplane.ConditionProgressing)
	degraded := meta.IsStatusConditionTrue(st.Conditions, controlplane.ConditionDegraded)
	if r := st.Rollout; r != nil || progressing != nil && progressing.Status == metav1.ConditionTrue && !degraded {
		what, gen, component := "roll-out", st.ObservedGeneration, ""
		if r != nil {
			gen, component = r.Generation, " ("+strings.Join(r.Components, ", ")+")"
			if r.Target == controlplane.TargetLastKnownGood {
				what = "rollback"
			}
		} else {
			component = " (" + progressing.Message + ")"
		}
		msg := fmt.Sprintf("a %s of generation %d is in progress%s", what, gen, component)
		if edited {
			msg += "; a new change replaces its target"
		}
		warn(msg)
	}
	if dg := meta.FindStatusCondition(st.Conditions, controlplane.ConditionDegraded); dg != nil && dg.Status == metav1.ConditionTrue {
		warn("the control plane is degraded: " + dg.Message)
	}
	if rb := st.RolledBack; rb != nil && rb.Generation == cp.Generation && st.LastKnownGood != nil {
		msg := fmt.Sprintf("held at last-known-good generation %d: generation %d was rolled back (%s: %s: %s)",
			st.LastKnownGood.Generation, rb.Generation, rb.Component, rb.Reason, rb.Message)
		if edited {
			msg += "; any change restarts the roll-out, of the whole spec: what failed in generation " +
				fmt.Sprint(rb.Generation) + " is rolled out again unless this change undoes it"
		} else {
			msg += "; change the spec to go on"
		}
		warn(msg)
	}
	if progressing != nil && progressing.Status == metav1.ConditionFalse && progressing.Reason == "InvalidSpec" &&
		progressing.ObservedGeneration == cp.Generation {
		warn(progressing.Message)
	}
	if len(out) > 0 {
		return out
	}
	msg := "nothing in progress"
	if lkg := st.LastKnownGood; lkg != nil && lkg.Generation == cp.Generation {
		msg = fmt.Sprintf("generation %d is rolled out; nothing in progress", cp.Generation)
	}
	return []Check{{Name: "roll-out", Result: Pass, Message: msg}}
}

func operatorCheck(d *appsv1.Deployment) Check {
	c := Check{Name: "operator"}
	name := manifests.Namespace + "/" + manifests.ControllerName
	switch {
	case d == nil:
		c.Result, c.Message = Block, "the Deployment "+name+" does not exist: nothing would roll the change out"
	case d.Status.ReadyReplicas < 1:
		c.Result, c.Message = Block, fmt.Sprintf("no replica of %s is ready (0 of %d): nothing would roll the change out; "+
			"kubectl -n %s describe deployment %s", name, d.Status.Replicas, manifests.Namespace, manifests.ControllerName)
	default:
		c.Result, c.Message = Pass, fmt.Sprintf("%s: %d of %d replicas ready", name, d.Status.ReadyReplicas, d.Status.Replicas)
	}
	return c
}

// Err is nil unless a check blocks; then it says which and why.
func (p *Plan) Err() error {
	var blocks []string
	for _, c := range p.Checks {
		if c.Result == Block {
			blocks = append(blocks, c.Name+": "+c.Message)
		}
	}
	if len(blocks) == 0 {
		return nil
	}
	what := "the change"
	if !p.Edited {
		what = "the spec"
	}
	return fmt.Errorf("%s cannot be rolled out as it is:\n  %s", what, strings.Join(blocks, "\n  "))
}

// Text is the plan for people: the changes, the components, the versions it can go to,
// one line per check.
func (p *Plan) Text() string {
	var b strings.Builder
	lkg := "none yet"
	if p.LastKnownGood != 0 {
		lkg = fmt.Sprintf("generation %d", p.LastKnownGood)
	}
	fmt.Fprintf(&b, "ControlPlane %s: generation %d; last rolled out to every component: %s\n", controlplane.Name, p.Generation, lkg)
	switch {
	case p.Edited && len(p.Changes) == 0:
		b.WriteString("the spec already says that: nothing would change\n")
	case p.Edited:
		b.WriteString("the spec would change:\n")
	case len(p.Changes) > 0:
		fmt.Fprintf(&b, "the spec differs from generation %d's, which ran healthy, in:\n", p.LastKnownGood)
	}
	unset := func(s *string) string {
		if s == nil {
			return "(unset)"
		}
		return *s
	}
	for _, c := range p.Changes {
		fmt.Fprintf(&b, "    %s: %s → %s\n", c.Path, unset(c.From), unset(c.To))
	}
	b.WriteString("components:\n")
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "    COMPONENT\tRUNS\tREADY\tWOULD RUN\tSETTINGS")
	for _, c := range p.Components {
		runs, ready := c.Image, fmt.Sprintf("%d/%d", c.Ready, c.Desired)
		if runs == "" {
			runs, ready = "(not seen)", "-"
		}
		target := c.TargetImage
		if target == c.Image {
			target = "(the same)"
		}
		settings := "unchanged"
		if c.Settings {
			settings = "change"
		}
		fmt.Fprintf(w, "    %s\t%s\t%s\t%s\t%s\n", c.Name, runs, ready, target, settings)
	}
	_ = w.Flush() // a strings.Builder does not fail
	b.WriteString("Versions with images on every node:\n")
	if len(p.Available) == 0 {
		b.WriteString("    (none besides the running one)\n")
	}
	for _, v := range p.Available {
		if v.Allowed {
			fmt.Fprintf(&b, "    ✓ %s\n", v.Version)
		} else {
			fmt.Fprintf(&b, "    ✗ %s: %s\n", v.Version, v.Reason)
		}
	}
	if len(p.AvailableEtcd) > 0 {
		fmt.Fprintf(&b, "    etcd: %s\n", strings.Join(p.AvailableEtcd, ", "))
	}
	b.WriteString("checks:\n")
	mark := map[Result]string{Pass: "✓", Warn: "!", Block: "✗"}
	for _, c := range p.Checks {
		fmt.Fprintf(&b, " %s %s: %s\n", mark[c.Result], c.Name, c.Message)
	}
	if p.Edited && !p.Blocked && len(p.Changes) > 0 {
		b.WriteString("nothing blocks: selfkube upgrade apply with the same --set and --unset makes the change\n")
	}
	return b.String()
}
