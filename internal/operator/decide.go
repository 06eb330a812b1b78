// Package operator is the control-plane operator of selfkube-controller: it rolls the
// ControlPlane resource's spec out to the self-hosted control plane, component by
// component in version-skew order (kube-apiserver, kube-controller-manager,
// kube-scheduler), judges each by its health gate, and rolls a component that fails
// back to the last-known-good spec.
//
// Decide is the whole policy, a pure function of what the controller observed; the
// controller (controller.go) observes, applies what Decide says with server-side apply,
// and writes the status and Events.
//
// For each component in order:
//
//	workload differs from the target ──▶ apply the target to it       (Progressing)
//	a pod of it fails, or it is not
//	  healthy TimeoutSeconds after
//	  its change ──────────────────────▶ target Spec and a last-known-good to go to:
//	                                       roll it back                 (RolledBack)
//	                                     otherwise                      (Degraded)
//	not healthy yet ───────────────────▶ wait
//	healthy, changed in this roll-out ─▶ wait until SoakSeconds have passed, then next
//	every component healthy ───────────▶ the target is the last-known-good (Available)
//
// The target is the spec, except while the spec's generation is the one rolled back:
// then it is the last-known-good spec, and nothing else changes until the spec does.
//
// Drift policy: a workload changed around the resource (kubectl edit of the apiserver
// DaemonSet) after its target ran healthy is left as it is while it stays healthy (the
// next change of the spec replaces it), and put back to the target as soon as one of its
// pods fails or it is not healthy within the roll-out timeout.
package operator

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/controlplane"
)

// Observed is one component as the controller saw it, against the target.
type Observed struct {
	Component string
	// Matches says the live workload is what the target renders (applying it would
	// change nothing).
	Matches bool
	// Healthy: the workload's controller has seen its latest generation, every pod runs
	// it and is Ready, none of an older one is left, and (the apiserver) every node's
	// apiserver answered an authorized request.
	Healthy bool
	// Waiting says what Healthy still waits for, for the status.
	Waiting string
	// Failure, when set, is a pod of the workload's current revision failing in a way
	// that waiting does not mend (a crash loop, an image that cannot be pulled); a pod of
	// an older revision, on its way out, does not count.
	Failure *Failure
	// Missing says the workload does not exist (deleted): it is put back.
	Missing bool
	// DownOnly says the component is not Healthy only because of its pods on nodes that
	// are down (Waiting says which): a roll-out of it waits for them, but a component
	// that is not changing counts as healthy, so that a node powered off holds neither
	// the other components nor the recording of the last-known-good spec.
	DownOnly bool
	// Refresh, when set, says the workload differs from its target because the cluster
	// changed, not its spec (the etcd members every apiserver lists: a control-plane node
	// joined or left): it is rolled out like a change of the spec, never adopted as drift.
	Refresh string
	// Status is the workload's figures for the ControlPlane's status.
	Status controlplane.ComponentStatus
	// Members are etcd's members, by node name (etcd only).
	Members []Member
	// EtcdImage is the image every etcd member must run: the target's etcd.version; ""
	// when the target names no version (a spec made before etcd versions), and the
	// members' images are left as they are (etcd only).
	EtcdImage string
}

// Failure is why a component failed.
type Failure struct {
	Reason  string // CamelCase: CrashLoopBackOff, ImagePullBackOff, Timeout …
	Message string
}

// State is what Decide decides on.
type State struct {
	// Generation and Spec of the ControlPlane; Status as it was.
	Generation int64
	Spec       controlplane.Spec
	Status     controlplane.Status
	// Invalid, when set, is why the spec cannot be rolled out (its validation errors).
	Invalid string
	// Components in roll-out order, observed against TargetOf(Status, Generation).
	Components []Observed
	Now        time.Time
}

// Decision is what to do.
type Decision struct {
	// Apply, when set, is the component whose workload to apply, rendered from Target.
	Apply  string
	Target controlplane.Target
	// Status is the ControlPlane's new status.
	Status controlplane.Status
	// Event, when set, is recorded on the ControlPlane.
	Event *Event
	// RequeueAfter, when not zero, is when to look again without waiting for a change.
	RequeueAfter time.Duration
}

// Event is an Event to record.
type Event struct {
	Warning         bool
	Reason, Message string
}

// Reasons of conditions and Events.
const (
	ReasonRollingOut      = "RollingOut"
	ReasonRollingBack     = "RollingBack"
	ReasonReverting       = "RevertingChange"
	ReasonSoaking         = "Soaking"
	ReasonWaiting         = "Waiting"
	ReasonRolledOut       = "RolledOut"
	ReasonRolledBack      = "RolledBack"
	ReasonNewSpec         = "NewSpecRolledOut"
	ReasonHealthy         = "AllComponentsHealthy"
	ReasonInvalidSpec     = "InvalidSpec"
	ReasonNoLastKnownGood = "NoLastKnownGood"
	ReasonTimeout         = "Timeout"
	ReasonSnapshotting    = "Snapshotting"
)

// Requeue periods.
const (
	pollProgress = 2 * time.Second
	pollDegraded = 10 * time.Second
)

// TargetOf is what the operator rolls out for a spec of generation: the spec, unless
// that generation was rolled back.
func TargetOf(st controlplane.Status, generation int64) controlplane.Target {
	if st.RolledBack != nil && st.RolledBack.Generation == generation && st.LastKnownGood != nil {
		return controlplane.TargetLastKnownGood
	}
	return controlplane.TargetSpec
}

// Decide decides the next step; it does no I/O.
func Decide(s State) Decision {
	target := TargetOf(s.Status, s.Generation)
	st := cloneStatus(s.Status)
	st.ObservedGeneration = s.Generation
	st.Components = nil
	for _, c := range s.Components {
		st.Components = append(st.Components, c.Status)
	}
	d := Decision{Target: target}
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
			ObservedGeneration: s.Generation, LastTransitionTime: metav1.NewTime(s.Now)})
	}
	// event records e only when the Progressing condition's reason changes with it, so a
	// state looked at again does not repeat its Event.
	before := meta.FindStatusCondition(s.Status.Conditions, controlplane.ConditionProgressing)
	event := func(e Event) {
		now := meta.FindStatusCondition(st.Conditions, controlplane.ConditionProgressing)
		if before == nil || now == nil || before.Reason != now.Reason || before.Message != now.Message {
			d.Event = &e
		}
	}
	done := func() Decision { d.Status = st; return d }

	if s.Invalid != "" && target == controlplane.TargetSpec {
		set(controlplane.ConditionProgressing, metav1.ConditionFalse, ReasonInvalidSpec,
			fmt.Sprintf("generation %d is not rolled out: %s", s.Generation, s.Invalid))
		event(Event{Warning: true, Reason: ReasonInvalidSpec, Message: "generation " + fmt.Sprint(s.Generation) + " is not rolled out: " + s.Invalid})
		return done()
	}
	rollTimeout := time.Duration(s.Spec.Rollout.Timeout()) * time.Second
	soak := time.Duration(s.Spec.Rollout.Soak()) * time.Second
	if target == controlplane.TargetLastKnownGood {
		rollTimeout = time.Duration(st.LastKnownGood.Spec.Rollout.Timeout()) * time.Second
		soak = time.Duration(st.LastKnownGood.Spec.Rollout.Soak()) * time.Second
	}
	var adopted []string
	for _, c := range s.Components {
		r := st.Rollout
		rolling := r != nil && r.Component == c.Component && r.Generation == s.Generation && r.Target == target && !r.Drift
		watchingDrift := r != nil && r.Component == c.Component && r.Generation == s.Generation && r.Target == target && r.Drift
		// A workload that differs from a spec it already ran healthy was changed around
		// the resource (kubectl edit): a healthy change is left as it is, a failing or
		// missing one is put back. During a rollback every component that differs from
		// the last-known-good spec is rolled back, none is drift.
		// etcd is a static pod on each host, changed by the node agents only: a member that
		// differs is one to change (a node joined since, a member an earlier roll-out did
		// not reach), never a change to adopt.
		isEtcd := c.Component == controlplane.ComponentEtcd
		drifted := !c.Matches && !rolling && target == controlplane.TargetSpec && !isEtcd &&
			st.LastKnownGood != nil && st.LastKnownGood.Generation == s.Generation && !c.Missing && c.Refresh == ""
		failure := c.Failure
		if drifted && failure == nil {
			if c.Healthy {
				if watchingDrift {
					st.Rollout = nil
				}
				adopted = append(adopted, c.Component)
				continue
			}
			if !watchingDrift {
				// Watched from now on: not healthy within the roll-out timeout, it is put back.
				st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Component: c.Component, Target: target,
					Started: metav1.NewTime(s.Now), Drift: true}
			} else if s.Now.Sub(r.Started.Time) > rollTimeout {
				failure = &Failure{Reason: ReasonTimeout, Message: fmt.Sprintf("not healthy %s after the change: %s", rollTimeout, c.Waiting)}
			}
			if failure == nil {
				set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting,
					c.Component+" was changed around the ControlPlane resource; waiting for it to be healthy or to fail: "+c.Waiting)
				d.RequeueAfter = pollProgress
				return done()
			}
		}
		if drifted {
			st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Component: c.Component, Target: target, Started: metav1.NewTime(s.Now)}
			msg := fmt.Sprintf("%s was changed around the ControlPlane resource and fails (%s: %s): putting the spec back",
				c.Component, failure.Reason, failure.Message)
			set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonReverting, msg)
			d.Apply, d.RequeueAfter = c.Component, pollProgress
			d.Event = &Event{Warning: true, Reason: ReasonReverting, Message: msg}
			return done()
		}
		// An add-on missing before the control plane ever ran healthy is one `selfkube
		// init` has not applied yet (it applies kube-proxy, then CoreDNS, after the
		// operator runs): init makes it, in its order. A control-plane workload missing
		// then was deleted (init applied it before the operator), and is put back below.
		if c.Missing && st.LastKnownGood == nil && initAppliesLast(c.Component) {
			set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting,
				c.Component+": "+c.Waiting+" yet; selfkube init applies it (run init again if it stopped)")
			d.RequeueAfter = pollProgress
			return done()
		}
		// etcd's members change one at a time, so a member of the new spec may fail while
		// others still differ: its failure is judged before the next member changes.
		// Each member has the roll-out timeout from when it was named; going back, a
		// timeout does not stop the members still to go back (only a member failing on
		// the last-known-good flags does).
		etcdTimedOut := isEtcd && rolling && memberTimedOut(st.Etcd, s.Now, rollTimeout)
		etcdFailure := isEtcd && rolling && (c.Failure != nil || etcdTimedOut && target == controlplane.TargetSpec)
		if !c.Matches && !etcdFailure {
			// A snapshot of etcd before a generation that never ran changes anything (a
			// workload put back, or a rollback, goes to what ran: none is needed).
			newGeneration := st.LastKnownGood == nil || st.LastKnownGood.Generation != s.Generation
			if !rolling && target == controlplane.TargetSpec && newGeneration && s.hasEtcd() && !snapshotted(st.Etcd, s.Generation) {
				// A snapshot of etcd before anything of this generation changes.
				d.RequeueAfter = pollProgress
				requestSnapshot(s, &st, set, event)
				return done()
			}
			if !rolling {
				st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Component: c.Component, Target: target, Started: metav1.NewTime(s.Now)}
			}
			if isEtcd {
				d.RequeueAfter = pollProgress
				nextMember(s, &st, target, c, set, event)
				return done()
			}
			d.Apply, d.RequeueAfter = c.Component, pollProgress
			if target == controlplane.TargetSpec {
				msg := "changing " + c.Component + " to generation " + fmt.Sprint(s.Generation)
				if c.Refresh != "" {
					msg = "changing " + c.Component + ": " + c.Refresh
				}
				set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut, msg)
				event(Event{Reason: ReasonRollingOut, Message: msg})
			} else {
				set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonRollingBack,
					"changing "+c.Component+" back to generation "+fmt.Sprint(st.LastKnownGood.Generation))
			}
			return done()
		}
		failure = c.Failure
		timedOut := rolling && s.Now.Sub(r.Started.Time) > rollTimeout
		if isEtcd {
			timedOut = etcdTimedOut
		}
		if failure == nil && timedOut && (!c.Healthy || !c.Matches) {
			waiting := c.Waiting
			if waiting == "" {
				waiting = "not every member runs it"
			}
			failure = &Failure{Reason: ReasonTimeout, Message: fmt.Sprintf("not healthy %s after its change: %s", rollTimeout, waiting)}
		}
		if failure != nil {
			if target == controlplane.TargetSpec && st.LastKnownGood != nil && st.LastKnownGood.Generation != s.Generation {
				st.RolledBack = &controlplane.RolledBack{Generation: s.Generation, Component: c.Component,
					Reason: failure.Reason, Message: failure.Message, Time: metav1.NewTime(s.Now)}
				st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Component: c.Component,
					Target: controlplane.TargetLastKnownGood, Started: metav1.NewTime(s.Now)}
				msg := fmt.Sprintf("%s failed its health gate (%s: %s): rolling generation %d back to generation %d",
					c.Component, failure.Reason, failure.Message, s.Generation, st.LastKnownGood.Generation)
				set(controlplane.ConditionRolledBack, metav1.ConditionTrue, failure.Reason, msg)
				set(controlplane.ConditionAvailable, metav1.ConditionFalse, ReasonRollingBack, msg)
				set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonRollingBack, msg)
				d.Apply, d.Target, d.RequeueAfter = c.Component, controlplane.TargetLastKnownGood, pollProgress
				if isEtcd {
					d.Apply = "" // its members go back one by one, from the next look on
				}
				d.Event = &Event{Warning: true, Reason: ReasonRolledBack, Message: msg}
				return done()
			}
			msg := fmt.Sprintf("%s is failing (%s: %s)", c.Component, failure.Reason, failure.Message)
			reason := failure.Reason
			switch {
			case target == controlplane.TargetLastKnownGood:
				msg += "; it fails on the last-known-good spec too: fix the spec or the node"
			case st.LastKnownGood == nil:
				msg += "; there is no last-known-good spec to roll back to"
				reason = ReasonNoLastKnownGood
			default:
				msg += "; the spec is the last-known-good one"
			}
			set(controlplane.ConditionDegraded, metav1.ConditionTrue, reason, msg)
			set(controlplane.ConditionAvailable, metav1.ConditionFalse, reason, msg)
			set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting, msg)
			event(Event{Warning: true, Reason: reason, Message: msg})
			d.RequeueAfter = pollDegraded
			return done()
		}
		if !c.Healthy && (rolling || !c.DownOnly) {
			if rolling {
				r.HealthySince = nil // the soak starts again once it is healthy again
			}
			msg := c.Component + ": " + c.Waiting
			set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting, msg)
			d.RequeueAfter = pollProgress
			return done()
		}
		if rolling {
			if r.HealthySince == nil {
				r.HealthySince = ptrTime(s.Now)
			}
			if left := soak - s.Now.Sub(r.HealthySince.Time); left > 0 {
				set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonSoaking,
					fmt.Sprintf("%s is healthy; watching it for %s before going on", c.Component, soak))
				d.RequeueAfter = left
				return done()
			}
		}
	}

	// Every component runs the target, healthy.
	finished := st.Rollout != nil
	st.Rollout = nil
	if st.Etcd != nil {
		st.Etcd.Member = nil
	}
	meta.RemoveStatusCondition(&st.Conditions, controlplane.ConditionDegraded)
	if target == controlplane.TargetSpec {
		st.LastKnownGood = &controlplane.Revision{Generation: s.Generation, Spec: s.Spec}
		if st.RolledBack != nil {
			set(controlplane.ConditionRolledBack, metav1.ConditionFalse, ReasonNewSpec,
				fmt.Sprintf("generation %d rolled out; generation %d had been rolled back", s.Generation, st.RolledBack.Generation))
		}
		set(controlplane.ConditionAvailable, metav1.ConditionTrue, ReasonHealthy, "every component runs generation "+fmt.Sprint(s.Generation)+adoptedNote(adopted))
		set(controlplane.ConditionProgressing, metav1.ConditionFalse, ReasonRolledOut, "generation "+fmt.Sprint(s.Generation)+" rolled out")
		if finished {
			d.Event = &Event{Reason: ReasonRolledOut, Message: "generation " + fmt.Sprint(s.Generation) + " rolled out to every component"}
		}
		return done()
	}
	msg := fmt.Sprintf("held at generation %d: generation %d was rolled back (%s of %s: %s); change the spec to go on",
		st.LastKnownGood.Generation, s.Generation, st.RolledBack.Reason, st.RolledBack.Component, st.RolledBack.Message)
	set(controlplane.ConditionAvailable, metav1.ConditionTrue, ReasonHealthy, "every component runs generation "+fmt.Sprint(st.LastKnownGood.Generation)+adoptedNote(adopted))
	set(controlplane.ConditionProgressing, metav1.ConditionFalse, ReasonRolledBack, msg)
	if finished {
		d.Event = &Event{Warning: true, Reason: ReasonRolledBack, Message: msg}
	}
	return done()
}

// adoptedNote says which components run a healthy change made around the resource.
func adoptedNote(components []string) string {
	if len(components) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%v changed around the resource, healthy: left as they are until the spec changes)", components)
}

func ptrTime(t time.Time) *metav1.Time {
	m := metav1.NewTime(t)
	return &m
}

// cloneStatus copies what Decide changes of a status, so that the caller's stays as it
// was.
func cloneStatus(s controlplane.Status) controlplane.Status {
	out := s
	out.Conditions = slices.Clone(s.Conditions)
	out.Components = slices.Clone(s.Components)
	if s.Rollout != nil {
		r := *s.Rollout
		if r.HealthySince != nil {
			h := *r.HealthySince
			r.HealthySince = &h
		}
		out.Rollout = &r
	}
	if s.Etcd != nil {
		e := *s.Etcd
		e.Snapshots = maps.Clone(s.Etcd.Snapshots)
		e.Checks = maps.Clone(s.Etcd.Checks)
		out.Etcd = &e
	}
	return out
}

// hasEtcd says the control plane has local etcd members (etcd is among the components).
func (s State) hasEtcd() bool {
	return slices.ContainsFunc(s.Components, func(c Observed) bool { return c.Component == controlplane.ComponentEtcd })
}

// snapshotted says a node agent reported a snapshot taken for generation.
func snapshotted(e *controlplane.EtcdStatus, generation int64) bool {
	if e == nil {
		return false
	}
	for _, sn := range e.Snapshots {
		if sn.Generation == generation && sn.Error == "" && sn.Path != "" {
			return true
		}
	}
	return false
}

// memberTimedOut says the member named in e has not run its change, Ready, within
// timeout of being named.
func memberTimedOut(e *controlplane.EtcdStatus, now time.Time, timeout time.Duration) bool {
	return e != nil && e.Member != nil && now.Sub(e.Member.Since.Time) > timeout
}

type setCondition func(typ string, status metav1.ConditionStatus, reason, msg string)

// requestSnapshot asks the node agents for a snapshot of etcd before generation rolls
// out, and waits for one; the failures the agents reported, if any, are said (they try
// again).
func requestSnapshot(s State, st *controlplane.Status, set setCondition, event func(Event)) {
	if st.Etcd == nil {
		st.Etcd = &controlplane.EtcdStatus{}
	} else {
		e := *st.Etcd
		st.Etcd = &e
	}
	st.Etcd.SnapshotFor = s.Generation
	msg := fmt.Sprintf("taking a snapshot of etcd before generation %d rolls out", s.Generation)
	var failed []string
	for _, node := range slices.Sorted(maps.Keys(st.Etcd.Snapshots)) {
		if sn := st.Etcd.Snapshots[node]; sn.Generation == s.Generation && sn.Error != "" {
			failed = append(failed, node+": "+sn.Error)
		}
	}
	if len(failed) > 0 {
		msg += "; failed on " + strings.Join(failed, "; ") + " (retrying)"
	}
	set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonSnapshotting, msg)
	event(Event{Warning: len(failed) > 0, Reason: ReasonSnapshotting, Message: msg})
}

// nextMember changes the next etcd member, one at a time: the first (by node name) that
// differs from the target, once every other member is Ready, so that a member restarting
// never costs the quorum. A member of the target that is not Ready yet is waited for.
func nextMember(s State, st *controlplane.Status, target controlplane.Target, c Observed, set setCondition, event func(Event)) {
	args, generation := s.Spec.Etcd.ExtraArgs, s.Generation
	if target == controlplane.TargetLastKnownGood {
		args, generation = st.LastKnownGood.Spec.Etcd.ExtraArgs, st.LastKnownGood.Generation
	}
	var next string
	var blocked []string
	// The member named last goes on being the one until it runs the target, Ready (a
	// change of the target meanwhile, a rollback, a node joined that sorts before it):
	// its agent may be restarting it at this moment, and no other may restart with it.
	if st.Etcd != nil && st.Etcd.Member != nil {
		named := st.Etcd.Member.Node
		if i := slices.IndexFunc(c.Members, func(m Member) bool { return m.Node == named }); i >= 0 {
			if m := c.Members[i]; !m.Matches || !m.Ready {
				next = named
			}
		}
	}
	for i, m := range c.Members {
		if next != "" {
			break
		}
		if m.Matches || !m.Exists {
			continue // a member with no mirror pod (restarting, joining) cannot be judged
		}
		blocked = nil
		for j, o := range c.Members {
			if j != i && !o.Ready {
				blocked = append(blocked, o.Node)
			}
		}
		if len(blocked) == 0 {
			next = m.Node
			break
		}
	}
	verb := "changing"
	if target == controlplane.TargetLastKnownGood {
		verb = "changing back"
	}
	if next == "" {
		set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting,
			fmt.Sprintf("etcd: waiting for the members of %v to be Ready before the next member changes (quorum)", blocked))
		return
	}
	e := controlplane.EtcdStatus{}
	if st.Etcd != nil {
		e = *st.Etcd
	}
	since := metav1.NewTime(s.Now)
	if old := e.Member; old != nil && old.Node == next {
		since = old.Since // the same member, maybe with a new target: its clock goes on
		if old.Generation == generation && old.Target == target {
			return // named already: nothing new to say
		}
	}
	e.Member = &controlplane.EtcdMemberChange{Node: next, Generation: generation, Target: target, ExtraArgs: maps.Clone(args),
		Image: c.EtcdImage, Since: since}
	st.Etcd = &e
	msg := fmt.Sprintf("%s the etcd member of node %s to generation %d", verb, next, generation)
	reason := ReasonRollingOut
	if target == controlplane.TargetLastKnownGood {
		reason = ReasonRollingBack
	}
	set(controlplane.ConditionProgressing, metav1.ConditionTrue, reason, msg)
	event(Event{Reason: reason, Message: msg})
}

// initAppliesLast says whether `selfkube init` applies component after the operator is
// running (its add-ons phase): kube-proxy and CoreDNS.
func initAppliesLast(component string) bool {
	return component == controlplane.ComponentKubeProxy || component == controlplane.ComponentCoreDNS
}
