// Package operator is the control-plane operator of selfkube-controller: it rolls the
// ControlPlane resource's spec out to the self-hosted control plane, stage by stage in
// version-skew order (etcd, kube-apiserver, then every client of the apiserver together:
// controlplane.Stage), judges each component by its health gate, and rolls a component
// that fails back to the last-known-good spec, with the rest of its generation, stage by
// stage in reverse.
//
// Decide is the whole policy, a pure function of what the controller observed; the
// controller (controller.go) observes, applies what Decide says with server-side apply,
// and writes the status and Events.
//
// For each stage in order, each component of it:
//
//	workload differs from the target ──▶ apply the target to it, with
//	                                       the stage's others           (Progressing)
//	a pod of it fails, or it is not
//	  healthy TimeoutSeconds after
//	  its change ──────────────────────▶ target Spec and a last-known-good to go to:
//	                                       roll it back                 (RolledBack)
//	                                     otherwise                      (Degraded)
//	not healthy yet ───────────────────▶ wait
//	the stage's changed components
//	  healthy ─────────────────────────▶ wait until they stayed so for SoakSeconds (not
//	                                       going back to the last-known-good), then next
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
	// Apply are the components whose workloads to apply, rendered from Target (the
	// components of one stage of the roll-out change together).
	Apply  []string
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
	for _, stage := range stageOrder(s.Components, target, st.RolledBack) {
		// What this stage still does: components to apply (with what to say of some),
		// components not healthy yet, and components changed around the resource (judged
		// once nothing else of the stage is under way).
		var apply, waiting []string
		var drifts []Observed
		for _, c := range stage {
			r := st.Rollout
			rolling := r.Rolls(c.Component, s.Generation, target) && !r.Drift
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
			if drifted {
				if c.Healthy && c.Failure == nil {
					if r.Rolls(c.Component, s.Generation, target) { // watched until now
						st.Rollout = nil
					}
					adopted = append(adopted, c.Component)
				} else {
					drifts = append(drifts, c)
				}
				continue
			}
			// An add-on missing before the control plane ever ran healthy is one `selfkube
			// init` has not applied yet (it applies kube-proxy, then CoreDNS, after the
			// operator runs): init makes it, in its order. A control-plane workload missing
			// then was deleted (init applied it before the operator), and is put back below.
			if c.Missing && st.LastKnownGood == nil && initAppliesLast(c.Component) {
				waiting = append(waiting, c.Component+": "+c.Waiting+" yet; selfkube init applies it (run init again if it stopped)")
				continue
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
				if isEtcd {
					if !rolling {
						st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Components: []string{c.Component}, Target: target, Started: metav1.NewTime(s.Now)}
					}
					d.RequeueAfter = pollProgress
					nextMember(s, &st, target, c, set, event)
					return done()
				}
				apply = append(apply, c.Component)
				continue
			}
			failure := c.Failure
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
				failed(s, &st, &d, c.Component, failure, set, event)
				return done()
			}
			if !c.Healthy && (rolling || !c.DownOnly) {
				waiting = append(waiting, c.Component+": "+c.Waiting)
			}
		}
		if len(apply) > 0 {
			applyStage(s, &st, &d, target, stage, apply, set, event)
			return done()
		}
		r := st.Rollout
		inFlight := rollingIn(r, stage, s.Generation, target)
		if len(drifts) > 0 && len(inFlight) == 0 {
			if drift(s, &st, &d, drifts, rollTimeout, set) {
				return done()
			}
		}
		for _, c := range drifts {
			waiting = append(waiting, c.Component+" (changed around the ControlPlane resource): "+c.Waiting)
		}
		if len(waiting) > 0 {
			if len(inFlight) > 0 {
				r.HealthySince = nil // the soak starts again once the stage is healthy again
			}
			set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting, strings.Join(waiting, "; "))
			d.RequeueAfter = pollProgress
			return done()
		}
		// The stage's changed components soak together; going back to the last-known-good
		// spec, which ran healthy already, nothing soaks.
		if len(inFlight) > 0 && target == controlplane.TargetSpec {
			if r.HealthySince == nil {
				r.HealthySince = ptrTime(s.Now)
			}
			if left := soak - s.Now.Sub(r.HealthySince.Time); left > 0 {
				set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonSoaking,
					fmt.Sprintf("%s healthy; watching for %s before going on", listed(inFlight), soak))
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

// failed decides on component failing its health gate: roll its generation back to the
// last-known-good spec when there is one to go to, else say Degraded.
func failed(s State, st *controlplane.Status, d *Decision, component string, failure *Failure, set setCondition, event func(Event)) {
	target := d.Target
	if target == controlplane.TargetSpec && st.LastKnownGood != nil && st.LastKnownGood.Generation != s.Generation {
		st.RolledBack = &controlplane.RolledBack{Generation: s.Generation, Component: component,
			Reason: failure.Reason, Message: failure.Message, Time: metav1.NewTime(s.Now)}
		// The failing component goes back first; the others of the generation follow,
		// stage by stage in reverse, from the next look on.
		st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Components: []string{component},
			Target: controlplane.TargetLastKnownGood, Started: metav1.NewTime(s.Now)}
		msg := fmt.Sprintf("%s failed its health gate (%s: %s): rolling generation %d back to generation %d",
			component, failure.Reason, failure.Message, s.Generation, st.LastKnownGood.Generation)
		set(controlplane.ConditionRolledBack, metav1.ConditionTrue, failure.Reason, msg)
		set(controlplane.ConditionAvailable, metav1.ConditionFalse, ReasonRollingBack, msg)
		set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonRollingBack, msg)
		d.Apply, d.Target, d.RequeueAfter = []string{component}, controlplane.TargetLastKnownGood, pollProgress
		if component == controlplane.ComponentEtcd {
			d.Apply = nil // its members go back one by one, from the next look on
		}
		d.Event = &Event{Warning: true, Reason: ReasonRolledBack, Message: msg}
		return
	}
	msg := fmt.Sprintf("%s is failing (%s: %s)", component, failure.Reason, failure.Message)
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
}

// drift decides on the components of a stage changed around the resource that are not
// healthy (drifts), once nothing else of the stage is under way: the one watched already
// (else the first) is watched until it is healthy (adopted, above) or fails or times out,
// and then put back to the target. It says false when there is nothing to do yet but
// wait for it.
func drift(s State, st *controlplane.Status, d *Decision, drifts []Observed, rollTimeout time.Duration, set setCondition) bool {
	target := d.Target
	r := st.Rollout
	c := drifts[0]
	if i := slices.IndexFunc(drifts, func(o Observed) bool { return r.Rolls(o.Component, s.Generation, target) && r.Drift }); i >= 0 {
		c = drifts[i]
	}
	watched := r.Rolls(c.Component, s.Generation, target) && r.Drift
	failure := c.Failure
	if failure == nil {
		if !watched {
			// Watched from now on: not healthy within the roll-out timeout, it is put back.
			st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Components: []string{c.Component}, Target: target,
				Started: metav1.NewTime(s.Now), Drift: true}
		} else if s.Now.Sub(r.Started.Time) > rollTimeout {
			failure = &Failure{Reason: ReasonTimeout, Message: fmt.Sprintf("not healthy %s after the change: %s", rollTimeout, c.Waiting)}
		}
		if failure == nil {
			set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonWaiting,
				c.Component+" was changed around the ControlPlane resource; waiting for it to be healthy or to fail: "+c.Waiting)
			d.RequeueAfter = pollProgress
			return true
		}
	}
	st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Components: []string{c.Component}, Target: target, Started: metav1.NewTime(s.Now)}
	msg := fmt.Sprintf("%s was changed around the ControlPlane resource and fails (%s: %s): putting the spec back",
		c.Component, failure.Reason, failure.Message)
	set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonReverting, msg)
	d.Apply, d.RequeueAfter = []string{c.Component}, pollProgress
	d.Event = &Event{Warning: true, Reason: ReasonReverting, Message: msg}
	return true
}

// stageOrder is the stages of components in the order Decide looks at them: in roll-out
// order; during a rollback, from the stage of the component that failed down to etcd
// (the stages above it were not reached by the failed generation), then the stages above
// it, which are only judged.
func stageOrder(components []Observed, target controlplane.Target, rolledBack *controlplane.RolledBack) [][]Observed {
	stages := stagesOf(components)
	if target != controlplane.TargetLastKnownGood || rolledBack == nil {
		return stages
	}
	failedStage := controlplane.Stage(rolledBack.Component)
	var down, up [][]Observed
	for _, stage := range stages {
		if controlplane.Stage(stage[0].Component) <= failedStage {
			down = append(down, stage)
		} else {
			up = append(up, stage)
		}
	}
	slices.Reverse(down)
	return append(down, up...)
}

// stagesOf groups components by the stage of the roll-out they change in
// (controlplane.Stage), in roll-out order.
func stagesOf(components []Observed) [][]Observed {
	var out [][]Observed
	for i, c := range components {
		if i == 0 || controlplane.Stage(c.Component) != controlplane.Stage(components[i-1].Component) {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], c)
	}
	return out
}

// rollingIn lists the components of stage that r rolls for generation and target.
func rollingIn(r *controlplane.RolloutStatus, stage []Observed, generation int64, target controlplane.Target) []string {
	var out []string
	for _, c := range stage {
		if r.Rolls(c.Component, generation, target) && !r.Drift {
			out = append(out, c.Component)
		}
	}
	return out
}

// applyStage has the components of one stage applied at once and recorded in the
// roll-out. A roll-out of the same stage under way keeps its start, which the timeout
// counts from, when a component of it is applied again, and starts again with one more
// component; its soak starts again either way. A component changed because the
// cluster changed (Refresh) is said with its reason.
func applyStage(s State, st *controlplane.Status, d *Decision, target controlplane.Target, stage []Observed,
	apply []string, set setCondition, event func(Event)) {
	if r := st.Rollout; r == nil || r.Drift || len(rollingIn(r, stage, s.Generation, target)) == 0 {
		st.Rollout = &controlplane.RolloutStatus{Generation: s.Generation, Components: slices.Clone(apply), Target: target,
			Started: metav1.NewTime(s.Now)}
	} else {
		for _, name := range apply {
			if !slices.Contains(r.Components, name) {
				// One more component: the stage's timeout counts from its change too.
				r.Components = append(r.Components, name)
				r.Started = metav1.NewTime(s.Now)
			}
		}
		r.HealthySince = nil
	}
	d.Apply, d.RequeueAfter = apply, pollProgress
	if target == controlplane.TargetLastKnownGood {
		set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonRollingBack,
			fmt.Sprintf("changing %s back to generation %d", listed(apply), st.LastKnownGood.Generation))
		return
	}
	var plain, refreshed []string
	for _, c := range stage {
		switch {
		case !slices.Contains(apply, c.Component):
		case c.Refresh != "":
			refreshed = append(refreshed, c.Component+": "+c.Refresh)
		default:
			plain = append(plain, c.Component)
		}
	}
	var parts []string
	if len(plain) > 0 {
		parts = append(parts, fmt.Sprintf("%s to generation %d", listed(plain), s.Generation))
	}
	msg := "changing " + strings.Join(append(parts, refreshed...), "; ")
	set(controlplane.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut, msg)
	event(Event{Reason: ReasonRollingOut, Message: msg})
}

// listed is names as a phrase: "a", "a and b", "a, b and c".
func listed(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
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
		r.Components = slices.Clone(s.Rollout.Components)
		if r.Component != "" && len(r.Components) == 0 {
			r.Components = []string{r.Component} // written by an operator before stages
		}
		r.Component = ""
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
