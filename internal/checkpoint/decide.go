// Package checkpoint is the core of the checkpointer, which keeps the self-hosted control
// plane of a node alive while the API that would tell the kubelet to run it is down:
// after a reboot, when an apiserver dies, when the scheduler's pods are deleted.
//
// For every pod annotated with AnnotationCheckpoint (the apiserver, controller manager
// and scheduler) that is bound to the node and comes from selfkube's control plane (a
// kube-system pod controlled by a DaemonSet or ReplicaSet, not a mirror pod, with a
// valid checkpoint name: see ValidName and package agent), the checkpointer keeps a
// checkpoint on the node: a sanitized static-pod copy of the newest Ready pod plus the
// Secrets and ConfigMaps it mounts, as files. A checkpoint is inactive (kept in the
// checkpoint directory) or active (also in the kubelet's static-pod directory, so the
// kubelet runs it without the API).
//
// This package holds what the checkpointer decides and keeps, and talks to neither the
// API nor the container runtime: its protocol (the annotations, label, directory and
// port the manifests use), the decision Next, the sanitizer and the Store on disk.
// Package agent (internal/checkpoint/agent) observes the API and the runtime, and acts.
//
// Whether to activate, retire or remove a checkpoint is the pure function Next over what
// was observed; the agent only observes and acts. Per checkpoint on disk:
//
//	             Activate: the parent has not run here for ActivateAfter
//	             (or not since the checkpointer started), and the API is
//	             unreachable, or the parent was deleted from this node and
//	             is Ready nowhere else (its controller is replacing it)
//	┌──────────┐ ─────────────────────────────────────────────▶ ┌────────┐
//	│ Inactive │                                                │ Active │
//	└──────────┘ ◀───────────────────────────────────────────── └────────┘
//	     │  Retire: a parent on this node has been Ready for         │
//	     │  RetireAfter, with its containers running here;           │
//	     │  or no parent is bound here and one is Ready on           │
//	     │  another node                                             │
//	     │                                                           │
//	     └───────── Remove: the API answers, and no parent ──────────┘
//	                has been bound here for RemoveAfter
//	                and none runs here (an active one: and
//	                a parent is Ready on another node)
//	                                   │
//	                                   ▼
//	                           deleted from disk
//
// An active static pod whose checkpoint is not (completely) on disk is retired: nothing
// could refresh it.
//
// It does not flap on what runs here: a retirement because of this node's parent needs
// that parent Ready with its containers running here, and an activation needs the parent
// not to have run here for ActivateAfter, so between such a retirement and the next
// activation the parent ran and then stayed away for ActivateAfter. That relies on the
// agent seeing a parent whose containers run here as running (ParentRunning): it learns
// both from one listing of the container runtime.
//
// A retirement because the component is Ready on another node needs no parent here, and
// nothing holds back what follows it: while no parent runs here, the checkpoint is
// activated again as soon as the API stops answering or no pod is Ready elsewhere any
// more, and retired again when the API answers with one Ready elsewhere, until
// RemoveAfter removes it. The apiserver's
// checkpoint can alternate so: the checkpointer's API is this node's apiserver, which
// stops answering once that checkpoint is retired.
//
// An unreachable API never retires or removes anything: it is exactly when a checkpoint
// is needed.
package checkpoint

import "time"

// Timing of the decisions.
const (
	// ActivateAfter is how long a parent must have been absent locally before its
	// checkpoint starts: long enough for the kubelet to restart a killed container
	// (which it does within a second), short against an outage.
	ActivateAfter = 2 * time.Second
	// RemoveAfter is how long no parent may be bound to this node before its checkpoint
	// is deleted: the grace period in which a deleted pod's controller replaces it.
	RemoveAfter = time.Minute
	// RetireAfter is how long a parent must have been Ready before its checkpoint is
	// retired: a stand-in stops only under a successor that has proven itself, and
	// after the burst of a boot, when the hand-over of connections is calmest.
	RetireAfter = 3 * time.Second
)

// Action is what Next decides for one checkpoint.
type Action string

const (
	// None: leave the checkpoint as it is.
	None Action = ""
	// Activate: put the checkpoint into the kubelet's static-pod directory.
	Activate Action = "Activate"
	// Retire: take it out of the static-pod directory again; it stays on disk.
	Retire Action = "Retire"
	// Remove: retire it and delete it from disk.
	Remove Action = "Remove"
)

// Observed is one observation of one checkpoint and its parent (the pods of the
// component it copies).
type Observed struct {
	At time.Time
	// APIReachable: the API answered this observation's pod list.
	APIReachable bool
	// ParentBound: the API has a pod of this component bound to this node that is not
	// being deleted. Only meaningful when APIReachable.
	ParentBound bool
	// ParentReady: such a pod is Ready, and its containers are the ones the container
	// runtime runs here now (a status from before a reboot does not count). Only
	// meaningful when APIReachable.
	ParentReady bool
	// ReadyElsewhere: a pod of this component is Ready on another node (only pods that
	// count, see package agent). Only meaningful when APIReachable.
	ReadyElsewhere bool
	// ParentRunning: the container runtime runs a container of a pod of this component
	// here (the checkpoint's own pod does not count).
	ParentRunning bool
	// Present: the checkpoint is on disk.
	Present bool
	// Active: the checkpoint is in the kubelet's static-pod directory.
	Active bool
}

// State is what the checkpointer remembers about one checkpoint between observations.
type State struct {
	// FirstObserved is the first observation: the baseline for a parent never seen bound.
	FirstObserved time.Time
	// ParentLastRunning and ParentLastBound are the last observations in which the parent
	// ran locally, and was bound here. Zero: never, since the checkpointer started.
	ParentLastRunning time.Time
	ParentLastBound   time.Time
	// ParentReadySince is when the parent became Ready here (zero: not Ready now).
	ParentReadySince time.Time
}

// goneForGood says the parent is gone from this node for good: the API answers, and no
// pod has been bound here for RemoveAfter (measured from when the checkpointer first
// looked, if never seen), none running here.
func goneForGood(s State, o Observed) bool {
	unboundSince := s.ParentLastBound
	if unboundSince.IsZero() {
		unboundSince = s.FirstObserved
	}
	return o.APIReachable && !o.ParentBound && !o.ParentRunning && o.At.Sub(unboundSince) >= RemoveAfter
}

// LastStandIn says an active checkpoint is the last stand-in of a component whose
// workload is gone: no pod of it bound here for RemoveAfter, none Ready on another
// node. Next keeps it; the agent says so (someone deleted a DaemonSet or Deployment).
// s is the state Next returned for o.
func LastStandIn(s State, o Observed) bool {
	return o.Present && o.Active && !o.ReadyElsewhere && goneForGood(s, o)
}

// Next is the decision for one checkpoint: the new state and what to do now.
func Next(s State, o Observed) (State, Action) {
	if s.FirstObserved.IsZero() {
		s.FirstObserved = o.At
	}
	if o.ParentRunning {
		s.ParentLastRunning = o.At
	}
	if o.APIReachable && o.ParentBound {
		s.ParentLastBound = o.At
	}
	switch {
	case !(o.APIReachable && o.ParentReady):
		s.ParentReadySince = time.Time{}
	case s.ParentReadySince.IsZero():
		s.ParentReadySince = o.At
	}
	if !o.Present {
		if o.Active { // a static pod left without its checkpoint: nothing can refresh it
			return s, Retire
		}
		return s, None
	}

	goneForGood := goneForGood(s, o)
	// Whether the parent is absent locally long enough to stand in for it. A parent never
	// seen running counts as long gone (a fresh boot).
	absent := !o.ParentRunning && (s.ParentLastRunning.IsZero() || o.At.Sub(s.ParentLastRunning) >= ActivateAfter)

	// The last stand-in is never removed: an active checkpoint of a component that is
	// Ready on no other node keeps it running (its DaemonSet or Deployment was deleted,
	// say) until `selfkube recover` creates the workload again and a parent replaces it.
	if goneForGood && !(o.Active && !o.ReadyElsewhere) {
		return s, Remove
	}
	if o.Active {
		switch {
		case o.APIReachable && o.ParentReady && o.At.Sub(s.ParentReadySince) >= RetireAfter:
			return s, Retire
		case o.APIReachable && !o.ParentBound && o.ReadyElsewhere:
			return s, Retire // another node runs it now
		}
		return s, None
	}
	if !absent {
		return s, None
	}
	if !o.APIReachable {
		return s, Activate
	}
	// The API works but the parent was deleted from this node: keep the component alive
	// while its controller replaces it, unless it runs elsewhere (then nothing is lost).
	if !o.ParentBound && !s.ParentLastBound.IsZero() && !o.ReadyElsewhere {
		return s, Activate
	}
	return s, None
}
