// Package controlplane is the ControlPlane resource (selfkube.io/v1alpha1): the one
// cluster-scoped object, named "cluster", through which an operator changes the
// self-hosted control plane (`kubectl edit controlplane cluster`), and in whose status
// selfkube-controller's operator says how the change went. This package holds its types,
// its CustomResourceDefinition, its validation, and how its spec renders into the
// cluster configuration the manifests are built from. It does no I/O.
//
// The spec holds only what may change after init: the Kubernetes version, the image
// repository, per control-plane component the image, extra flags, feature gates and
// resources, etcd's extra flags, and the images of kube-proxy and CoreDNS. Everything else of the cluster (networks, certificates, endpoint) stays in
// the configuration init published (kube-system/selfkube-config), which the spec
// overrides field by field.
package controlplane

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/selfkube/selfkube/internal/config"
)

// The resource's API.
const (
	Group    = "selfkube.io"
	Version  = "v1alpha1"
	Kind     = "ControlPlane"
	Resource = "controlplanes"
	// Name is the name of the one ControlPlane of a cluster.
	Name = "cluster"
)

// GroupVersionResource of ControlPlanes, for the dynamic client.
var GroupVersionResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// ControlPlane is the self-hosted control plane of the cluster: what it should run (spec)
// and what runs (status).
type ControlPlane struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   Spec   `json:"spec"`
	Status Status `json:"status,omitempty"`
}

// Spec is what an operator may change of the control plane.
type Spec struct {
	// KubernetesVersion of kube-apiserver, kube-controller-manager and kube-scheduler,
	// e.g. v1.36.3: the tag of their images unless an image is set.
	KubernetesVersion string `json:"kubernetesVersion"`
	// ImageRepository is the registry and path prefix of the component images.
	ImageRepository string `json:"imageRepository,omitempty"`
	// APIServer, ControllerManager and Scheduler are the components' settings.
	APIServer         Component `json:"apiServer,omitempty"`
	ControllerManager Component `json:"controllerManager,omitempty"`
	Scheduler         Component `json:"scheduler,omitempty"`
	// Etcd is the settings of the local etcd members (static pods, changed one member at
	// a time by the node agent of each control-plane node); empty with an external etcd.
	Etcd Etcd `json:"etcd,omitempty"`
	// KubeProxy and CoreDNS are the add-ons the operator rolls out after the control
	// plane (kube-proxy follows KubernetesVersion unless its image is set).
	KubeProxy Addon `json:"kubeProxy,omitempty"`
	CoreDNS   Addon `json:"coreDNS,omitempty"`
	// Rollout sets how a change is rolled out and judged.
	Rollout Rollout `json:"rollout,omitempty"`
}

// Component is what may change of one control-plane component: its image and the
// settings the configuration file has for it (extraArgs, featureGates, resources).
type Component struct {
	// Image overrides the full image reference (<imageRepository>/<component>:<version>).
	Image            string `json:"image,omitempty"`
	config.Component `json:",inline"`
}

// Addon is what may change of an add-on: its image.
type Addon struct {
	// Image overrides the full image reference.
	Image string `json:"image,omitempty"`
}

// Etcd is what may change of the local etcd members.
type Etcd struct {
	// Version of etcd the members run, e.g. v3.6.16 (their image's tag is 3.6.16-0);
	// changed one member at a time like the flags. Empty: the cluster configuration's.
	Version string `json:"version,omitempty"`
	// ExtraArgs are flags added to, or overriding, selfkube's (without the dashes). The
	// flags that make the member what it is (its name, data directory, URLs, certificates,
	// initial cluster) are selfkube's and cannot be set here.
	ExtraArgs map[string]string `json:"extraArgs,omitempty"`
}

// Rollout sets how a change rolls out: the components of each stage (Stage) must be
// healthy within TimeoutSeconds of their change and stay healthy for SoakSeconds before
// the next stage changes; a component that fails is rolled back to the last-known-good
// spec.
type Rollout struct {
	// TimeoutSeconds a component has to become healthy after its change (default 300).
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
	// SoakSeconds a healthy component must stay healthy (default 10; 0: none).
	SoakSeconds *int32 `json:"soakSeconds,omitempty"`
}

// Defaults of Rollout.
const (
	DefaultTimeoutSeconds = 300
	DefaultSoakSeconds    = 10
)

// Timeout is TimeoutSeconds, defaulted.
func (r Rollout) Timeout() int32 {
	if r.TimeoutSeconds <= 0 {
		return DefaultTimeoutSeconds
	}
	return r.TimeoutSeconds
}

// Soak is SoakSeconds, defaulted.
func (r Rollout) Soak() int32 {
	if r.SoakSeconds == nil || *r.SoakSeconds < 0 {
		return DefaultSoakSeconds
	}
	return *r.SoakSeconds
}

// Status is what the operator observed and did.
type Status struct {
	// ObservedGeneration is the generation of the spec the status describes.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Progressing, Available, Degraded, RolledBack.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Components, in the order they roll out.
	Components []ComponentStatus `json:"components,omitempty"`
	// Rollout is the component being changed now, if any.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// LastKnownGood is the last spec every component ran healthy with: what a failed
	// change is rolled back to.
	LastKnownGood *Revision `json:"lastKnownGood,omitempty"`
	// RolledBack is the last change that was rolled back. While its generation is the
	// spec's, the operator holds the control plane at LastKnownGood and changes nothing
	// more until the spec changes again.
	RolledBack *RolledBack `json:"rolledBack,omitempty"`
	// Etcd is the operator's word to the node agents about the etcd members, and what
	// they did: the snapshot taken before each change, and the one member to change now.
	Etcd *EtcdStatus `json:"etcd,omitempty"`
	// Certificates are what each control-plane node's agent last renewed of the
	// control-plane certificates (those in the components' Secrets, and its node's: etcd's
	// and the kubeconfigs), by node name.
	Certificates map[string]CertificateRenewal `json:"certificates,omitempty"`
}

// CertificateRenewal is the last renewal a node agent made (or tried).
type CertificateRenewal struct {
	Time metav1.Time `json:"time"`
	// Renewed names each certificate renewed and where it lives
	// ("apiserver in secret kube-system/kube-apiserver", "etcd/server in /etc/kubernetes/pki").
	Renewed []string `json:"renewed,omitempty"`
	// NextDue is when the earliest of the certificates this agent renews enters the
	// renewal window.
	NextDue *metav1.Time `json:"nextDue,omitempty"`
	// Error says why the renewal failed (it is tried again).
	Error string `json:"error,omitempty"`
}

// EtcdStatus is what the operator asks of the node agents (SnapshotFor, Member) and what
// they report (Snapshots). Only the operator and the node agents of control-plane nodes
// may write the status.
type EtcdStatus struct {
	// SnapshotFor asks each control-plane node's agent for a snapshot of its etcd member
	// before the spec of this generation rolls out (0: none asked).
	SnapshotFor int64 `json:"snapshotFor,omitempty"`
	// Snapshots are the newest snapshot of each node, by node name.
	Snapshots map[string]EtcdSnapshot `json:"snapshots,omitempty"`
	// Scheduled are the newest scheduled snapshot of each node (etcd.local.snapshots of
	// the cluster configuration), by node name; their Generation is 0.
	Scheduled map[string]EtcdSnapshot `json:"scheduled,omitempty"`
	// Member, when set, is the one member whose node agent changes it now; every other
	// member stays as it is (quorum is kept).
	Member *EtcdMemberChange `json:"member,omitempty"`
	// Checks are the node agents' checks of their member once it runs the change named
	// in Member, by node name: the member is judged done only with a passing check made
	// after it came back Ready.
	Checks map[string]EtcdCheck `json:"checks,omitempty"`
}

// EtcdCheck is a node agent's check of its own member after a change: the member's
// endpoint answers with a leader, and the member list has every member started and
// voting (none unstarted, none a learner).
type EtcdCheck struct {
	// Generation and Target of the member change it was made for.
	Generation int64  `json:"generation"`
	Target     Target `json:"target"`
	// Healthy says the check passed; Members is how many started, voting members the
	// list has; Message says what failed.
	Healthy bool        `json:"healthy"`
	Members int32       `json:"members"`
	Message string      `json:"message,omitempty"`
	Time    metav1.Time `json:"time"`
}

// EtcdSnapshot is a snapshot a node agent took (or failed to take).
type EtcdSnapshot struct {
	// Generation of the spec it was taken before.
	Generation int64 `json:"generation"`
	// Path of the file on the node (0600, in a 0700 directory; the newest few are kept).
	Path string `json:"path,omitempty"`
	// Revision of the etcd keyspace and Size in bytes.
	Revision int64       `json:"revision,omitempty"`
	Size     int64       `json:"size,omitempty"`
	Time     metav1.Time `json:"time"`
	// Error says why it failed (Path is then empty).
	Error string `json:"error,omitempty"`
}

// EtcdMemberChange is the change of one member.
type EtcdMemberChange struct {
	// Node whose member changes.
	Node string `json:"node"`
	// Generation and Target of the spec whose etcd extraArgs it gets.
	Generation int64  `json:"generation"`
	Target     Target `json:"target"`
	// ExtraArgs are the flags the member gets (Etcd.ExtraArgs of that spec).
	ExtraArgs map[string]string `json:"extraArgs,omitempty"`
	// Image the member runs (its version), as that spec renders it; empty from an
	// operator older than etcd versions: the member's image is left as it is.
	Image string `json:"image,omitempty"`
	// Since is when this node's member was named: its roll-out timeout counts from then.
	Since metav1.Time `json:"since"`
}

// ComponentStatus is one component as observed.
type ComponentStatus struct {
	Name string `json:"name"`
	// Image the component's workload runs (the version is its tag).
	Image string `json:"image,omitempty"`
	// ObservedGeneration is the workload's generation its controller has seen.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Updated pods run the current template; Ready of them are Ready; Desired is how
	// many there should be (one per control-plane node for the apiserver).
	Updated int32 `json:"updated"`
	Ready   int32 `json:"ready"`
	Desired int32 `json:"desired"`
}

// RolloutStatus is the change of one stage of the roll-out in progress (Stage).
type RolloutStatus struct {
	// Generation of the spec being rolled out (or rolled back from).
	Generation int64 `json:"generation"`
	// Components being changed, of one stage.
	Components []string `json:"components"`
	// Component is the one component being changed, as operators before stages wrote
	// it: read (as Components) from a status such an operator left, never written.
	Component string `json:"component,omitempty"`
	// Target is Spec or LastKnownGood.
	Target Target `json:"target"`
	// Started is when the stage's first workload was changed.
	Started metav1.Time `json:"started"`
	// HealthySince is when the components were first seen healthy together after the
	// change.
	HealthySince *metav1.Time `json:"healthySince,omitempty"`
	// Drift marks a component changed around the resource and not healthy since
	// Started: put back to the target unless healthy within the roll-out timeout.
	Drift bool `json:"drift,omitempty"`
}

// Rolls says r (which may be nil) changes component towards target for generation.
func (r *RolloutStatus) Rolls(component string, generation int64, target Target) bool {
	return r != nil && r.Generation == generation && r.Target == target && slices.Contains(r.Components, component)
}

// Target is what the operator rolls out.
type Target string

// The targets.
const (
	TargetSpec          Target = "Spec"
	TargetLastKnownGood Target = "LastKnownGood"
)

// Revision is a spec that ran healthy.
type Revision struct {
	Generation int64 `json:"generation"`
	Spec       Spec  `json:"spec"`
}

// RolledBack says which change was rolled back and why.
type RolledBack struct {
	// Generation of the spec that was rolled back.
	Generation int64 `json:"generation"`
	// Component that failed its health gate.
	Component string `json:"component"`
	// Reason is a CamelCase word (CrashLoopBackOff, ImagePullBackOff, Timeout …), Message
	// says what was seen.
	Reason  string      `json:"reason"`
	Message string      `json:"message"`
	Time    metav1.Time `json:"time"`
}

// The condition types.
const (
	// ConditionProgressing is True while a component is being changed.
	ConditionProgressing = "Progressing"
	// ConditionAvailable is True when every component runs its target, healthy.
	ConditionAvailable = "Available"
	// ConditionDegraded is True when a component is unhealthy and cannot be rolled back
	// (no last-known-good spec, or that one fails too).
	ConditionDegraded = "Degraded"
	// ConditionRolledBack is True while the control plane is held at the last-known-good
	// spec because the current spec failed.
	ConditionRolledBack = "RolledBack"
)

// The components, in the order they change (version-skew order: etcd, then the
// apiserver, then its clients: the controller manager and scheduler, and the add-ons
// kube-proxy, CoreDNS and selfkube's pod network, which runs only where the cluster's
// network plugin is selfkube's).
var Components = []string{ComponentEtcd, "kube-apiserver", "kube-controller-manager", "kube-scheduler",
	ComponentKubeProxy, ComponentCoreDNS, ComponentPodNetwork}

// The names of etcd (its static pods are etcd-<node>) and of the add-ons among
// Components: the names of their workloads.
const (
	ComponentEtcd       = "etcd"
	ComponentKubeProxy  = "kube-proxy"
	ComponentCoreDNS    = "coredns"
	ComponentPodNetwork = "selfkube-network"
)

// Stage is the step of a roll-out in which component changes: etcd (0), then the
// apiserver (1), then every client of the apiserver at once (2). The version-skew policy
// orders only the stages (no client newer than the apiserver, the apiserver not newer
// than etcd supports); the clients do not depend on each other's version, so they roll
// together and a roll-out costs three waits, not six. A rollback goes back through the
// stages in reverse.
func Stage(component string) int {
	switch component {
	case ComponentEtcd:
		return 0
	case "kube-apiserver":
		return 1
	}
	return 2
}

// Workloads are the components run by a DaemonSet or a Deployment; etcd is a static pod
// on each control-plane node.
var Workloads = Components[1:]

// ComponentSpec returns the settings of component (one of Components) in s.
func (s *Spec) ComponentSpec(component string) *Component {
	switch component {
	case "kube-apiserver":
		return &s.APIServer
	case "kube-controller-manager":
		return &s.ControllerManager
	case "kube-scheduler":
		return &s.Scheduler
	}
	return nil
}

// AddonSpec returns the settings of the add-on component (kube-proxy or coredns) in s.
func (s *Spec) AddonSpec(component string) *Addon {
	switch component {
	case ComponentKubeProxy:
		return &s.KubeProxy
	case ComponentCoreDNS:
		return &s.CoreDNS
	}
	return nil
}

// Unstructured is c for the dynamic client, with its apiVersion and kind.
func (c *ControlPlane) Unstructured() (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(c)
	if err != nil {
		return nil, fmt.Errorf("converting the ControlPlane: %w", err)
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetAPIVersion(Group + "/" + Version)
	u.SetKind(Kind)
	return u, nil
}

// FromUnstructured reads a ControlPlane the dynamic client returned.
func FromUnstructured(u *unstructured.Unstructured) (*ControlPlane, error) {
	var c ControlPlane
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &c); err != nil {
		return nil, fmt.Errorf("reading the ControlPlane %s: %w", u.GetName(), err)
	}
	return &c, nil
}
