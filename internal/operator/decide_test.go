package operator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
)

var t0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func spec(flag string) controlplane.Spec {
	s := controlplane.Spec{KubernetesVersion: "v1.36.3"}
	if flag != "" {
		s.APIServer.Component = config.Component{ExtraArgs: map[string]string{flag: "1"}}
	}
	return s
}

// healthy observes every component as running the target, healthy, on a cluster with
// an external etcd (no etcd component; etcdMembers adds one).
func healthy() []Observed {
	var out []Observed
	for _, c := range controlplane.Workloads {
		out = append(out, Observed{Component: c, Matches: true, Healthy: true})
	}
	return out
}

func with(obs []Observed, component string, change func(*Observed)) []Observed {
	for i := range obs {
		if obs[i].Component == component {
			change(&obs[i])
		}
	}
	return obs
}

func condition(t *testing.T, st controlplane.Status, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, typ)
	if c == nil {
		t.Fatalf("no %s condition in %+v", typ, st.Conditions)
	}
	return *c
}

func good(gen int64, s controlplane.Spec) *controlplane.Revision {
	return &controlplane.Revision{Generation: gen, Spec: s}
}

func TestFirstLookAtAHealthyClusterRecordsItAsGood(t *testing.T) {
	d := Decide(State{Generation: 1, Spec: spec(""), Components: healthy(), Now: t0})
	if len(d.Apply) > 0 || d.Event != nil {
		t.Errorf("a healthy cluster matching its spec was changed: %+v", d)
	}
	if lkg := d.Status.LastKnownGood; lkg == nil || lkg.Generation != 1 {
		t.Errorf("last-known-good = %+v, want generation 1", lkg)
	}
	if c := condition(t, d.Status, controlplane.ConditionAvailable); c.Status != metav1.ConditionTrue {
		t.Errorf("Available = %+v", c)
	}
}

func TestAChangeRollsOutOneComponentAtATimeInOrder(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec(""))}
	// The change touches the apiserver and the scheduler: the apiserver goes first, and
	// the scheduler is not touched while the apiserver is not through its soak.
	obs := with(with(healthy(), "kube-apiserver", func(o *Observed) { o.Matches = false }), "kube-scheduler", func(o *Observed) { o.Matches = false })
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0})
	if !applies(d, "kube-apiserver") || d.Target != controlplane.TargetSpec || d.Event == nil || d.Event.Reason != ReasonRollingOut {
		t.Fatalf("first step: %+v, want the apiserver changed to the spec, with an Event", d)
	}
	st = d.Status
	// Applied; its new pod is not Ready yet.
	obs = with(with(healthy(), "kube-apiserver", func(o *Observed) { o.Healthy, o.Waiting = false, "1 of 1 pods updated, 0 Ready" }),
		"kube-scheduler", func(o *Observed) { o.Matches = false })
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(5 * time.Second)})
	if len(d.Apply) > 0 || d.RequeueAfter == 0 || !strings.Contains(condition(t, d.Status, controlplane.ConditionProgressing).Message, "0 Ready") {
		t.Fatalf("while the apiserver rolls: %+v", d)
	}
	st = d.Status
	// Healthy: soaking, the scheduler still waits.
	obs = with(healthy(), "kube-scheduler", func(o *Observed) { o.Matches = false })
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(10 * time.Second)})
	if len(d.Apply) > 0 || condition(t, d.Status, controlplane.ConditionProgressing).Reason != ReasonSoaking {
		t.Fatalf("right after the apiserver is healthy: %+v, want a soak", d)
	}
	st = d.Status
	// Soaked: the scheduler's turn.
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(10*time.Second + controlplane.DefaultSoakSeconds*time.Second)})
	if !applies(d, "kube-scheduler") {
		t.Fatalf("after the soak: %+v, want the scheduler changed", d)
	}
	st = d.Status
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: healthy(), Now: t0.Add(time.Minute)})
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(2 * time.Minute)})
	if d.Status.LastKnownGood.Generation != 2 || d.Status.Rollout != nil || d.Event == nil || d.Event.Reason != ReasonRolledOut {
		t.Errorf("at the end: %+v, want generation 2 the last-known-good and a RolledOut Event", d)
	}
}

func TestAFailingComponentIsRolledBackAndHeld(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec(""))}
	d := Decide(State{Generation: 2, Spec: spec("no-such-flag"), Status: st,
		Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Matches = false }), Now: t0})
	st = d.Status
	crash := &Failure{Reason: "CrashLoopBackOff", Message: "pod kube-apiserver-x on node1: exit code 1"}
	d = Decide(State{Generation: 2, Spec: spec("no-such-flag"), Status: st,
		Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Healthy, o.Failure = false, crash }), Now: t0.Add(15 * time.Second)})
	if !applies(d, "kube-apiserver") || d.Target != controlplane.TargetLastKnownGood {
		t.Fatalf("a crash-looping apiserver: %+v, want it rolled back", d)
	}
	if d.Event == nil || !d.Event.Warning || d.Event.Reason != ReasonRolledBack || !strings.Contains(d.Event.Message, "CrashLoopBackOff") {
		t.Errorf("Event = %+v", d.Event)
	}
	rb := condition(t, d.Status, controlplane.ConditionRolledBack)
	if rb.Status != metav1.ConditionTrue || rb.Reason != "CrashLoopBackOff" || d.Status.RolledBack.Component != "kube-apiserver" {
		t.Errorf("RolledBack = %+v, %+v", rb, d.Status.RolledBack)
	}
	st = d.Status
	if TargetOf(st, 2) != controlplane.TargetLastKnownGood || TargetOf(st, 3) != controlplane.TargetSpec {
		t.Errorf("the target: rolled-back generation 2 holds at the last-known-good, a new generation 3 is rolled out")
	}
	// Back on the old spec, healthy: held there, Available, and nothing is changed again.
	d = Decide(State{Generation: 2, Spec: spec("no-such-flag"), Status: st, Components: healthy(), Now: t0.Add(30 * time.Second)})
	d = Decide(State{Generation: 2, Spec: spec("no-such-flag"), Status: d.Status, Components: healthy(), Now: t0.Add(time.Minute)})
	if len(d.Apply) > 0 || d.Status.LastKnownGood.Generation != 1 || condition(t, d.Status, controlplane.ConditionAvailable).Status != metav1.ConditionTrue {
		t.Errorf("held: %+v", d)
	}
	if p := condition(t, d.Status, controlplane.ConditionProgressing); p.Status != metav1.ConditionFalse || p.Reason != ReasonRolledBack {
		t.Errorf("Progressing = %+v", p)
	}
	again := Decide(State{Generation: 2, Spec: spec("no-such-flag"), Status: d.Status, Components: healthy(), Now: t0.Add(2 * time.Minute)})
	if again.Event != nil {
		t.Errorf("a second look at a held control plane records another Event: %+v", again.Event)
	}
	// A new spec is rolled out again, and clears RolledBack once it is through.
	d = Decide(State{Generation: 3, Spec: spec("v"), Status: d.Status, Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Matches = false }), Now: t0.Add(3 * time.Minute)})
	if !applies(d, "kube-apiserver") || d.Target != controlplane.TargetSpec {
		t.Fatalf("generation 3: %+v", d)
	}
	d = Decide(State{Generation: 3, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(4 * time.Minute)})
	d = Decide(State{Generation: 3, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(5 * time.Minute)})
	if d.Status.LastKnownGood.Generation != 3 || condition(t, d.Status, controlplane.ConditionRolledBack).Status != metav1.ConditionFalse {
		t.Errorf("after generation 3: %+v", d.Status)
	}
}

func TestAComponentNotHealthyInTimeIsRolledBack(t *testing.T) {
	s := spec("v")
	s.Rollout.TimeoutSeconds = 60
	st := controlplane.Status{LastKnownGood: good(1, spec("")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{"kube-apiserver"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	obs := with(healthy(), "kube-apiserver", func(o *Observed) { o.Healthy, o.Waiting = false, "node1's apiserver: 403" })
	if d := Decide(State{Generation: 2, Spec: s, Status: st, Components: obs, Now: t0.Add(59 * time.Second)}); len(d.Apply) > 0 {
		t.Errorf("rolled back before the timeout: %+v", d)
	}
	d := Decide(State{Generation: 2, Spec: s, Status: st, Components: obs, Now: t0.Add(61 * time.Second)})
	if d.Target != controlplane.TargetLastKnownGood || d.Status.RolledBack.Reason != ReasonTimeout || !strings.Contains(d.Status.RolledBack.Message, "403") {
		t.Errorf("after the timeout: %+v", d)
	}
}

func TestNoWayBackIsDegraded(t *testing.T) {
	crash := &Failure{Reason: "CrashLoopBackOff", Message: "exit 1"}
	for name, st := range map[string]controlplane.Status{
		"no last-known-good":           {},
		"the spec is the known-good":   {LastKnownGood: good(2, spec(""))},
		"the known-good fails as well": {LastKnownGood: good(1, spec("")), RolledBack: &controlplane.RolledBack{Generation: 2, Component: "kube-apiserver"}},
	} {
		t.Run(name, func(t *testing.T) {
			d := Decide(State{Generation: 2, Spec: spec(""), Status: st,
				Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Healthy, o.Failure = false, crash }), Now: t0})
			if len(d.Apply) > 0 {
				t.Errorf("changed %s with no way back: %+v", d.Apply, d)
			}
			if c := condition(t, d.Status, controlplane.ConditionDegraded); c.Status != metav1.ConditionTrue {
				t.Errorf("Degraded = %+v", c)
			}
			if d.Event == nil || !d.Event.Warning {
				t.Errorf("no warning Event: %+v", d.Event)
			}
		})
	}
}

func TestAnInvalidSpecChangesNothing(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec(""))}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Invalid: "spec.apiServer.extraArgs[--v]: must be a flag name",
		Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Matches = false }), Now: t0})
	if len(d.Apply) > 0 || d.Event == nil || d.Event.Reason != ReasonInvalidSpec {
		t.Errorf("an invalid spec: %+v", d)
	}
	if d.Status.LastKnownGood.Generation != 1 {
		t.Errorf("the last-known-good moved to an invalid spec")
	}
}

// A change made around the resource (kubectl edit of a workload) after its target ran
// healthy: left as it is while healthy, put back to the spec once it fails.
func TestDriftPolicy(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(2, spec("v"))}
	edited := func(o *Observed) { o.Matches = false }
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: with(healthy(), "kube-controller-manager", edited), Now: t0})
	if len(d.Apply) > 0 || !strings.Contains(condition(t, d.Status, controlplane.ConditionAvailable).Message, "kube-controller-manager") {
		t.Errorf("a healthy edit: %+v, want it left and named", d)
	}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: with(healthy(), "kube-controller-manager", func(o *Observed) {
		o.Matches, o.Healthy, o.Waiting = false, false, "1 of 2 replicas updated"
	}), Now: t0})
	if len(d.Apply) > 0 || d.RequeueAfter == 0 {
		t.Errorf("an edit still rolling: %+v, want a wait", d)
	}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: with(healthy(), "kube-controller-manager", func(o *Observed) {
		o.Matches, o.Healthy, o.Failure = false, false, &Failure{Reason: "CrashLoopBackOff", Message: "exit 1"}
	}), Now: t0})
	if !applies(d, "kube-controller-manager") || d.Target != controlplane.TargetSpec || d.Event == nil || d.Event.Reason != ReasonReverting {
		t.Errorf("a failing edit: %+v, want the spec put back with an Event", d)
	}
	if d.Status.RolledBack != nil || d.Status.LastKnownGood.Generation != 2 {
		t.Errorf("putting an edit back is not a rollback of the spec: %+v", d.Status)
	}
	// A spec not rolled out yet is not drift: it is rolled out.
	d = Decide(State{Generation: 3, Spec: spec("w"), Status: st, Components: with(healthy(), "kube-apiserver", edited), Now: t0})
	if !applies(d, "kube-apiserver") || d.Event == nil || d.Event.Reason != ReasonRollingOut {
		t.Errorf("a new spec: %+v", d)
	}
}

// A workload that differs from a spec that ran because the cluster changed (a
// control-plane node joined: every apiserver must list its etcd member) is rolled out
// like a change, with its gates, never adopted as drift; then it is done.
func TestAChangeOfTheClusterIsRolledOutNotAdopted(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(2, spec("v"))}
	refresh := func(o *Observed) {
		o.Matches, o.Refresh = false, "the etcd members changed (--etcd-servers a → a,b)"
	}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: with(healthy(), "kube-apiserver", refresh), Now: t0})
	if !applies(d, "kube-apiserver") || d.Target != controlplane.TargetSpec || d.Status.Rollout == nil || d.Status.Rollout.Drift {
		t.Fatalf("a change of the etcd members: %+v, want the apiserver rolled out", d)
	}
	if d.Event == nil || !strings.Contains(d.Event.Message, "etcd members changed") {
		t.Errorf("Event %+v, want it to say why", d.Event)
	}
	// Rolled out and healthy: soaked like any change, then done; the spec stays good.
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(20 * time.Second)})
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(40 * time.Second)})
	if len(d.Apply) > 0 || d.Status.Rollout != nil || d.Status.LastKnownGood.Generation != 2 ||
		condition(t, d.Status, controlplane.ConditionAvailable).Status != metav1.ConditionTrue {
		t.Errorf("after the roll-out: %+v", d.Status)
	}
}

// A DaemonSet unhealthy only for its pod on a node that is down (a worker powered off)
// holds nothing while it is not changing; a roll-out of it waits for the node.
func TestANodeDownHoldsOnlyTheRollOutOfItsDaemonSet(t *testing.T) {
	downOnly := func(o *Observed) {
		o.Healthy, o.DownOnly, o.Waiting = false, true, "1 of 2 pods available (on a node that is down)"
	}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: controlplane.Status{LastKnownGood: good(1, spec(""))},
		Components: with(healthy(), "kube-proxy", downOnly), Now: t0})
	if d.Status.LastKnownGood.Generation != 2 || condition(t, d.Status, controlplane.ConditionAvailable).Status != metav1.ConditionTrue {
		t.Errorf("kube-proxy unchanged, a worker down: %+v, want generation 2 recorded as good", d.Status)
	}
	rolling := controlplane.Status{LastKnownGood: good(1, spec("")), Rollout: &controlplane.RolloutStatus{
		Generation: 2, Components: []string{"kube-proxy"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: rolling, Components: with(healthy(), "kube-proxy", downOnly), Now: t0.Add(time.Second)})
	if d.Status.LastKnownGood.Generation != 1 || d.RequeueAfter == 0 || d.Status.Rollout == nil {
		t.Errorf("kube-proxy rolling, a worker down: %+v, want it waited for", d.Status)
	}
}

func TestDecideLeavesItsInputAlone(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec("")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{"kube-apiserver"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: healthy(), Now: t0.Add(time.Second)})
	if st.Rollout.HealthySince != nil || len(st.Conditions) != 0 {
		t.Errorf("Decide changed the status it was given: %+v", st)
	}
}

// A generation that changed two components and failed in the second rolls both back,
// the first one too: none is taken for a change made around the resource.
func TestARollbackRevertsEveryChangedComponent(t *testing.T) {
	crash := &Failure{Reason: "CrashLoopBackOff", Message: "exit 1"}
	st := controlplane.Status{LastKnownGood: good(1, spec("")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{"kube-scheduler"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st,
		Components: with(healthy(), "kube-scheduler", func(o *Observed) { o.Healthy, o.Failure = false, crash }), Now: t0.Add(time.Second)})
	if !applies(d, "kube-scheduler") || d.Target != controlplane.TargetLastKnownGood {
		t.Fatalf("the failing scheduler: %+v", d)
	}
	// The apiserver still runs generation 2, which differs from the last-known-good.
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status,
		Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Matches = false }), Now: t0.Add(2 * time.Second)})
	if !applies(d, "kube-apiserver") || d.Target != controlplane.TargetLastKnownGood {
		t.Errorf("the apiserver, changed by the rolled-back generation: %+v, want it rolled back too", d)
	}
}

// The soak is of a whole stage staying healthy: its changed component, or a stage-mate
// that is not changing, unhealthy part-way starts it again.
func TestTheSoakStartsAgainAfterAnUnhealthyLook(t *testing.T) {
	for name, tc := range map[string]struct {
		rolling, unhealthy string
		healthyAgain       time.Duration
	}{
		"the changed component":             {"kube-apiserver", "kube-apiserver", 11 * time.Second},
		"a stage-mate that is not changing": {"kube-scheduler", "coredns", 11500 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			st := controlplane.Status{LastKnownGood: good(1, spec("")),
				Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{tc.rolling}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
			look := func(st controlplane.Status, at time.Duration, ok bool) Decision {
				obs := healthy()
				if !ok {
					obs = with(obs, tc.unhealthy, func(o *Observed) { o.Healthy, o.Waiting = false, "pod not Ready" })
				}
				return Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(at)})
			}
			d := look(st, time.Second, true)
			d = look(d.Status, 3*time.Second, false)
			d = look(d.Status, tc.healthyAgain, true)
			if d.Status.LastKnownGood.Generation == 2 || condition(t, d.Status, controlplane.ConditionProgressing).Reason != ReasonSoaking {
				t.Errorf("%s healthy at 1 s, %s not at 3 s, healthy at %s: %+v, want it still soaking", tc.rolling, tc.unhealthy, tc.healthyAgain, d.Status)
			}
		})
	}
}

// A workload deleted through the API is put back.
func TestAMissingWorkloadIsPutBack(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(2, spec("v"))}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: with(healthy(), "kube-scheduler", func(o *Observed) {
		o.Matches, o.Healthy, o.Missing, o.Waiting = false, false, true, "its Deployment does not exist"
	}), Now: t0})
	if !applies(d, "kube-scheduler") {
		t.Errorf("a deleted scheduler Deployment: %+v, want it applied again", d)
	}
}

// Before the control plane first ran healthy, a missing add-on (kube-proxy, CoreDNS) is
// one init has not applied yet: the operator waits and applies nothing. A missing
// control-plane workload then, and any missing workload afterwards, was deleted: it is
// put back.
func TestAMissingWorkloadBeforeTheFirstHealthyRun(t *testing.T) {
	for _, c := range []struct {
		component string
		lkg       bool
		wantApply bool
	}{
		{"kube-proxy", false, false},
		{"coredns", false, false},
		{"kube-scheduler", false, true},
		{"kube-apiserver", false, true},
		{"kube-proxy", true, true},
		{"coredns", true, true},
	} {
		st := controlplane.Status{}
		if c.lkg {
			st.LastKnownGood = good(1, spec(""))
		}
		d := Decide(State{Generation: 1, Spec: spec(""), Status: st, Components: with(healthy(), c.component, func(o *Observed) {
			o.Matches, o.Healthy, o.Missing, o.Waiting = false, false, true, "its workload does not exist"
		}), Now: t0})
		if c.wantApply {
			// Put back, possibly after the snapshot that comes before a generation's first change.
			if !applies(d, c.component) && d.Status.Etcd == nil {
				t.Errorf("%s missing (last-known-good %v): %+v, want it put back", c.component, c.lkg, d)
			}
			continue
		}
		if len(d.Apply) > 0 || d.RequeueAfter == 0 {
			t.Errorf("%s missing before any last-known-good: %+v, want a wait and nothing applied", c.component, d)
		}
		if p := condition(t, d.Status, controlplane.ConditionProgressing); p.Reason != ReasonWaiting || !strings.Contains(p.Message, c.component) {
			t.Errorf("%s: Progressing = %+v, want Waiting on it", c.component, p)
		}
	}
}

// An edit around the resource that never gets healthy (its pods stay Pending, say) is
// put back once the roll-out timeout has passed; one that gets healthy in time is left,
// and no longer watched.
func TestADriftNeverHealthyIsPutBackAfterTheTimeout(t *testing.T) {
	s := spec("v")
	s.Rollout.TimeoutSeconds = 60
	st := controlplane.Status{LastKnownGood: good(2, s)}
	pending := func(o *Observed) { o.Matches, o.Healthy, o.Waiting = false, false, "pod kube-scheduler-x is not Ready" }
	d := Decide(State{Generation: 2, Spec: s, Status: st, Components: with(healthy(), "kube-scheduler", pending), Now: t0})
	if len(d.Apply) > 0 || d.Status.Rollout == nil || !d.Status.Rollout.Drift {
		t.Fatalf("first look at a pending edit: %+v, want it watched", d)
	}
	watched := d.Status
	if d := Decide(State{Generation: 2, Spec: s, Status: watched, Components: with(healthy(), "kube-scheduler", pending), Now: t0.Add(59 * time.Second)}); len(d.Apply) > 0 {
		t.Errorf("put back before the timeout: %+v", d)
	}
	d = Decide(State{Generation: 2, Spec: s, Status: watched, Components: with(healthy(), "kube-scheduler", pending), Now: t0.Add(61 * time.Second)})
	if !applies(d, "kube-scheduler") || d.Event == nil || d.Event.Reason != ReasonReverting || !strings.Contains(d.Event.Message, "Timeout") {
		t.Errorf("after the timeout: %+v, want it put back", d)
	}
	d = Decide(State{Generation: 2, Spec: s, Status: watched, Components: with(healthy(), "kube-scheduler", func(o *Observed) { o.Matches = false }), Now: t0.Add(30 * time.Second)})
	if len(d.Apply) > 0 || d.Status.Rollout != nil {
		t.Errorf("an edit healthy in time: %+v, want it left and no longer watched", d)
	}
}

// applies says d applies exactly names, in that order.
func applies(d Decision, names ...string) bool {
	return slices.Equal(d.Apply, names)
}

// The apiserver's clients do not depend on each other's version: once the apiserver is
// through, every client the change touches is applied in one look, and they soak
// together.
func TestTheAPIServersClientsRollTogetherAfterIt(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec(""))}
	differ := func(obs []Observed, names ...string) []Observed {
		for _, n := range names {
			obs = with(obs, n, func(o *Observed) { o.Matches = false })
		}
		return obs
	}
	clients := []string{"kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns"}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: differ(healthy(), append([]string{"kube-apiserver"}, clients...)...), Now: t0})
	if !applies(d, "kube-apiserver") {
		t.Fatalf("first look: applies %v, want the apiserver alone", d.Apply)
	}
	// The apiserver healthy, through its soak: its clients all at once.
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: differ(healthy(), clients...), Now: t0.Add(20 * time.Second)})
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: differ(healthy(), clients...), Now: t0.Add(40 * time.Second)})
	if !applies(d, clients...) || d.Event == nil || !strings.Contains(d.Event.Message, "kube-controller-manager, kube-scheduler, kube-proxy and coredns to generation 2") {
		t.Fatalf("after the apiserver: applies %v (Event %+v), want its four clients at once", d.Apply, d.Event)
	}
	if r := d.Status.Rollout; r == nil || !slices.Equal(r.Components, clients) {
		t.Fatalf("the roll-out records %+v, want the four clients", d.Status.Rollout)
	}
	// One of them not healthy yet: the others wait for it, and nothing is recorded good.
	notReady := with(healthy(), "kube-proxy", func(o *Observed) { o.Healthy, o.Waiting = false, "1 of 2 pods updated" })
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: notReady, Now: t0.Add(45 * time.Second)})
	if len(d.Apply) > 0 || d.Status.LastKnownGood.Generation != 1 || !strings.Contains(condition(t, d.Status, controlplane.ConditionProgressing).Message, "kube-proxy: 1 of 2") {
		t.Fatalf("one client not healthy: %+v", d)
	}
	// All healthy: they soak together, then the generation is good.
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(50 * time.Second)})
	if c := condition(t, d.Status, controlplane.ConditionProgressing); c.Reason != ReasonSoaking || d.Status.LastKnownGood.Generation != 1 {
		t.Fatalf("all healthy: %+v, want them soaking", c)
	}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(61 * time.Second)})
	if d.Status.LastKnownGood.Generation != 2 {
		t.Errorf("after the soak: last-known-good %+v, want generation 2", d.Status.LastKnownGood)
	}
}

// A rollback goes through the stages in reverse: the apiserver goes back only once its
// clients run the last-known-good spec, healthy, so that no client is ever newer than
// the apiserver; the spec that ran healthy before is not soaked again.
func TestARollbackGoesBackStageByStageInReverse(t *testing.T) {
	crash := &Failure{Reason: "CrashLoopBackOff", Message: "exit 1"}
	st := controlplane.Status{LastKnownGood: good(1, spec("")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{"kube-controller-manager", "kube-scheduler"},
			Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	// The whole generation differs from the last-known-good; the scheduler crashes.
	lkgDiffers := func(names ...string) []Observed {
		obs := healthy()
		for _, n := range names {
			obs = with(obs, n, func(o *Observed) { o.Matches = false })
		}
		return obs
	}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st,
		Components: with(healthy(), "kube-scheduler", func(o *Observed) { o.Healthy, o.Failure = false, crash }), Now: t0.Add(5 * time.Second)})
	if !applies(d, "kube-scheduler") || d.Target != controlplane.TargetLastKnownGood {
		t.Fatalf("the crashing scheduler: %+v, want it rolled back first", d)
	}
	// Against the last-known-good, the apiserver and the controller manager differ.
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: lkgDiffers("kube-apiserver", "kube-controller-manager"), Now: t0.Add(6 * time.Second)})
	if !applies(d, "kube-controller-manager") {
		t.Fatalf("second look: applies %v, want the controller manager (the scheduler's stage), not the apiserver", d.Apply)
	}
	if r := d.Status.Rollout; r == nil || !slices.Equal(r.Components, []string{"kube-scheduler", "kube-controller-manager"}) || !r.Started.Equal(&metav1.Time{Time: t0.Add(6 * time.Second)}) {
		t.Errorf("the rollback's record: %+v, want both clients, its clock restarted when the controller manager joined", d.Status.Rollout)
	}
	// The controller manager not healthy yet on the old spec: the apiserver waits.
	waiting := with(lkgDiffers("kube-apiserver"), "kube-controller-manager", func(o *Observed) { o.Healthy, o.Waiting = false, "0 of 1 Ready" })
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: waiting, Now: t0.Add(8 * time.Second)})
	if len(d.Apply) > 0 {
		t.Fatalf("the apiserver went back while a client was not back: %v", d.Apply)
	}
	// The clients back and healthy: the apiserver goes back at once (no soak).
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: lkgDiffers("kube-apiserver"), Now: t0.Add(9 * time.Second)})
	if !applies(d, "kube-apiserver") || d.Target != controlplane.TargetLastKnownGood {
		t.Fatalf("clients back: applies %v, want the apiserver back", d.Apply)
	}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: d.Status, Components: healthy(), Now: t0.Add(20 * time.Second)})
	if p := condition(t, d.Status, controlplane.ConditionProgressing); p.Reason != ReasonRolledBack || d.Status.Rollout != nil {
		t.Errorf("everything back and healthy: %+v, want the rollback finished without a soak", p)
	}
}

// A failed etcd change goes back member by member at once, even while a client of the
// apiserver, which the generation never reached, is failing: the stages above the one
// that failed are judged after it went back.
func TestAFailedEtcdChangeGoesBackWhatever(t *testing.T) {
	args := map[string]string{"snapshot-count": "5000"}
	crash := &Failure{Reason: "CrashLoopBackOff", Message: "exit 1"}
	st := controlplane.Status{LastKnownGood: good(1, spec("")), Etcd: snapshotFor(2),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{controlplane.ComponentEtcd}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	st.Etcd.Member = &controlplane.EtcdMemberChange{Node: "a", Generation: 2, Target: controlplane.TargetSpec, Since: metav1.NewTime(t0)}
	etcdFails := withEtcd(healthy(), member("a", true, false), member("b", false, true), member("c", false, true))
	etcdFails[0].Failure = crash
	d := Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Components: etcdFails, Now: t0.Add(10 * time.Second)})
	if d.Target != controlplane.TargetLastKnownGood || d.Status.RolledBack == nil || d.Status.RolledBack.Component != controlplane.ComponentEtcd {
		t.Fatalf("the failing member: %+v, want generation 2 rolled back", d)
	}
	// Next look, against the last-known-good: member a differs, CoreDNS crash-loops
	// (on the last-known-good spec, which it runs).
	obs := withEtcd(with(healthy(), "coredns", func(o *Observed) { o.Healthy, o.Failure = false, crash }),
		member("a", false, false), member("b", true, true), member("c", true, true))
	d = Decide(State{Generation: 2, Spec: etcdSpec(args), Status: d.Status, Components: obs, Now: t0.Add(12 * time.Second)})
	if m := d.Status.Etcd.Member; m == nil || m.Node != "a" || m.Target != controlplane.TargetLastKnownGood {
		t.Fatalf("etcd's member a is not named to go back: %+v (Progressing %+v)", d.Status.Etcd.Member, condition(t, d.Status, controlplane.ConditionProgressing))
	}
	// Every member back: now CoreDNS, failing on the last-known-good too, is Degraded.
	obs = withEtcd(with(healthy(), "coredns", func(o *Observed) { o.Healthy, o.Failure = false, crash }),
		member("a", true, true), member("b", true, true), member("c", true, true))
	d = Decide(State{Generation: 2, Spec: etcdSpec(args), Status: d.Status, Components: obs, Now: t0.Add(30 * time.Second)})
	if c := condition(t, d.Status, controlplane.ConditionDegraded); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "coredns") {
		t.Errorf("CoreDNS failing on the last-known-good spec: Degraded %+v", c)
	}
}

// A component that joins a stage under way (put back after a delete, say) has the whole
// timeout from its own change, not what is left of its stage-mates'.
func TestAComponentJoiningAStageHasItsOwnTimeout(t *testing.T) {
	s := spec("v")
	s.Rollout.TimeoutSeconds = 60
	st := controlplane.Status{LastKnownGood: good(1, spec("")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{"kube-controller-manager"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	gone := with(healthy(), "coredns", func(o *Observed) {
		o.Matches, o.Healthy, o.Missing, o.Waiting = false, false, true, "its Deployment does not exist"
	})
	d := Decide(State{Generation: 2, Spec: s, Status: st, Components: gone, Now: t0.Add(58 * time.Second)})
	if !applies(d, "coredns") {
		t.Fatalf("a deleted CoreDNS: applies %v", d.Apply)
	}
	slow := with(healthy(), "coredns", func(o *Observed) { o.Healthy, o.Waiting = false, "0 of 2 Ready" })
	d = Decide(State{Generation: 2, Spec: s, Status: d.Status, Components: slow, Now: t0.Add(62 * time.Second)})
	if d.Status.RolledBack != nil {
		t.Fatalf("CoreDNS timed out 4 s after it was put back: %+v", d.Status.RolledBack)
	}
	d = Decide(State{Generation: 2, Spec: s, Status: d.Status, Components: slow, Now: t0.Add(119 * time.Second)})
	if rb := d.Status.RolledBack; rb == nil || rb.Component != "coredns" || rb.Reason != ReasonTimeout {
		t.Errorf("61 s after it was put back, still not healthy: rolled back %+v, want a Timeout of coredns", rb)
	}
}

// A component changed around the resource waits while its stage-mates' change is under
// way: the record of that change (its clock, its soak) is kept, and a deleted stage-mate
// is put back at once.
func TestDriftWaitsForItsStagesChange(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(2, spec("v")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Components: []string{"coredns"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	obs := with(with(healthy(), "coredns", func(o *Observed) { o.Healthy, o.Waiting = false, "1 of 2 Ready" }),
		"selfkube-network", func(o *Observed) { o.Matches, o.Healthy, o.Waiting = false, false, "edited pod not Ready" })
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(5 * time.Second)})
	if r := d.Status.Rollout; r == nil || r.Drift || !slices.Equal(r.Components, []string{"coredns"}) || !r.Started.Equal(&metav1.Time{Time: t0}) {
		t.Errorf("the drift replaced CoreDNS's record: %+v", d.Status.Rollout)
	}
	// A deleted scheduler before a drifted kube-proxy: put back now, not after the drift.
	obs = with(with(healthy(), "kube-scheduler", func(o *Observed) { o.Matches, o.Healthy, o.Missing, o.Waiting = false, false, true, "gone" }),
		"kube-proxy", func(o *Observed) { o.Matches, o.Healthy, o.Waiting = false, false, "edited pod not Ready" })
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: controlplane.Status{LastKnownGood: good(2, spec("v"))}, Components: obs, Now: t0})
	if !applies(d, "kube-scheduler") {
		t.Errorf("a deleted scheduler beside a drifted kube-proxy: applies %v, want the scheduler put back", d.Apply)
	}
}

// A status written by an operator before stages (rollout.component) is read as its
// one-component stage: the roll-out under way keeps its clock.
func TestARollOutRecordedBeforeStagesIsKept(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec("")),
		Rollout: &controlplane.RolloutStatus{Generation: 2, Component: "kube-apiserver", Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}}
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st,
		Components: with(healthy(), "kube-apiserver", func(o *Observed) { o.Healthy, o.Waiting = false, "0 Ready" }), Now: t0.Add(time.Minute)})
	if r := d.Status.Rollout; r == nil || !slices.Equal(r.Components, []string{"kube-apiserver"}) || r.Component != "" || !r.Started.Equal(&metav1.Time{Time: t0}) {
		t.Errorf("an old record: %+v, want the apiserver's roll-out since t0", d.Status.Rollout)
	}
}
