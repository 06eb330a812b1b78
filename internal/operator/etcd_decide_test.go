package operator

import (
	"maps"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/controlplane"
)

func etcdSpec(args map[string]string) controlplane.Spec {
	s := spec("")
	s.Etcd.ExtraArgs = args
	return s
}

// withEtcd puts etcd first, its members on nodes a, b and c as given (matching the
// target, Ready).
func withEtcd(obs []Observed, members ...Member) []Observed {
	o := Observed{Component: controlplane.ComponentEtcd, Matches: true, Healthy: true, Members: members}
	for _, m := range members {
		o.Matches = o.Matches && m.Matches
		o.Healthy = o.Healthy && m.Ready && m.Exists
	}
	return append([]Observed{o}, obs...)
}

func member(node string, matches, ready bool) Member {
	return Member{Node: node, Exists: true, Matches: matches, Ready: ready}
}

func snapshotFor(gen int64) *controlplane.EtcdStatus {
	return &controlplane.EtcdStatus{SnapshotFor: gen, Snapshots: map[string]controlplane.EtcdSnapshot{
		"a": {Generation: gen, Path: "/var/lib/selfkube/etcd-snapshots/x.db", Time: metav1.NewTime(t0)}}}
}

// No component changes before a node agent reported a snapshot of etcd taken for the
// generation; then the roll-out starts.
func TestASnapshotOfEtcdIsTakenBeforeAnyChange(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec(""))}
	obs := withEtcd(with(healthy(), "kube-apiserver", func(o *Observed) { o.Matches = false }),
		member("a", true, true), member("b", true, true), member("c", true, true))
	d := Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0})
	if len(d.Apply) > 0 || d.Status.Etcd == nil || d.Status.Etcd.SnapshotFor != 2 {
		t.Fatalf("first look: %+v, want a snapshot asked for generation 2 and nothing applied", d)
	}
	if c := condition(t, d.Status, controlplane.ConditionProgressing); c.Reason != ReasonSnapshotting {
		t.Errorf("Progressing = %+v, want Snapshotting", c)
	}
	// A snapshot of the generation before (an older change) does not count; a failed one
	// for this generation is said, and still nothing changes.
	st = d.Status
	st.Etcd.Snapshots = map[string]controlplane.EtcdSnapshot{
		"a": {Generation: 1, Path: "/old.db"},
		"b": {Generation: 2, Error: "context deadline exceeded"}}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(time.Second)})
	if len(d.Apply) > 0 {
		t.Fatalf("applied without a snapshot of generation 2: %+v", d)
	}
	if c := condition(t, d.Status, controlplane.ConditionProgressing); !strings.Contains(c.Message, "b: context deadline exceeded") {
		t.Errorf("the failed snapshot is not said: %+v", c)
	}
	st = d.Status
	st.Etcd.Snapshots["a"] = controlplane.EtcdSnapshot{Generation: 2, Path: "/var/lib/selfkube/etcd-snapshots/new.db"}
	d = Decide(State{Generation: 2, Spec: spec("v"), Status: st, Components: obs, Now: t0.Add(2 * time.Second)})
	if !applies(d, "kube-apiserver") {
		t.Fatalf("with the snapshot: %+v, want the apiserver applied", d)
	}
	// A rollback needs none: it goes back to what ran.
}

// An etcd change goes one member at a time, and never while another member is not
// Ready (a restarting member and a down one would cost a three-member cluster its
// quorum).
func TestEtcdMembersChangeOneAtATimeKeepingQuorum(t *testing.T) {
	args := map[string]string{"snapshot-count": "5000"}
	st := controlplane.Status{LastKnownGood: good(1, spec("")), Etcd: snapshotFor(2)}
	look := func(at time.Duration, members ...Member) Decision {
		t.Helper()
		d := Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Components: withEtcd(healthy(), members...), Now: t0.Add(at)})
		if len(d.Apply) > 0 {
			t.Fatalf("a workload applied during the etcd change: %+v", d)
		}
		st = d.Status
		return d
	}
	changing := func(d Decision) string {
		if d.Status.Etcd == nil || d.Status.Etcd.Member == nil {
			return ""
		}
		m := d.Status.Etcd.Member
		if !maps.Equal(m.ExtraArgs, args) || m.Generation != 2 || m.Target != controlplane.TargetSpec {
			t.Fatalf("member change %+v, want generation 2's flags %v", m, args)
		}
		return m.Node
	}
	if n := changing(look(0, member("a", false, true), member("b", false, true), member("c", false, true))); n != "a" {
		t.Fatalf("first member changed: %q, want a", n)
	}
	// a restarts: its mirror pod is gone a moment, then back not Ready; b must wait.
	if n := changing(look(time.Second, Member{Node: "a"}, member("b", false, true), member("c", false, true))); n != "a" {
		t.Fatalf("while a restarts the instruction moved to %q", n)
	}
	if n := changing(look(2*time.Second, member("a", true, false), member("b", false, true), member("c", false, true))); n != "a" {
		t.Fatalf("while a is not Ready the instruction moved to %q", n)
	}
	// a is back, but b is down for its own reasons: c may not change (b and c down is
	// two of three); b, down anyway, may (a and c keep the quorum).
	if n := changing(look(3*time.Second, member("a", true, true), member("b", false, false), member("c", false, true))); n != "b" {
		t.Fatalf("with b down the instruction went to %q, want b", n)
	}
	d := look(4*time.Second, member("a", true, true), member("b", true, false), member("c", false, true))
	if n := changing(d); n != "b" {
		t.Fatalf("with b not Ready the instruction moved to %q", n)
	}
	if n := changing(look(5*time.Second, member("a", true, true), member("b", true, true), member("c", false, true))); n != "c" {
		t.Fatalf("third member changed: %q, want c", n)
	}
	// All three run it: etcd soaks, then the roll-out ends and the instruction is gone.
	look(6*time.Second, member("a", true, true), member("b", true, true), member("c", true, true))
	d = look(30*time.Second, member("a", true, true), member("b", true, true), member("c", true, true))
	if c := condition(t, d.Status, controlplane.ConditionAvailable); c.Status != metav1.ConditionTrue {
		t.Fatalf("Available = %+v after every member changed", c)
	}
	if d.Status.Etcd.Member != nil {
		t.Errorf("the member instruction stays after the roll-out: %+v", d.Status.Etcd.Member)
	}
	if lkg := d.Status.LastKnownGood; lkg == nil || lkg.Generation != 2 {
		t.Errorf("last-known-good = %+v, want generation 2", lkg)
	}
}

// A member that crash-loops on the new flags is rolled back before any other member
// changes, to the last-known-good flags, and the spec is held.
func TestAFailingEtcdMemberIsRolledBackFirst(t *testing.T) {
	args := map[string]string{"no-such-flag": "1"}
	old := map[string]string{"snapshot-count": "10000"}
	st := controlplane.Status{LastKnownGood: good(1, etcdSpec(old)), Etcd: snapshotFor(2)}
	d := Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Now: t0,
		Components: withEtcd(healthy(), member("a", false, true), member("b", false, true), member("c", false, true))})
	if d.Status.Etcd.Member == nil || d.Status.Etcd.Member.Node != "a" {
		t.Fatalf("first step: %+v", d.Status.Etcd)
	}
	st = d.Status
	crashing := withEtcd(healthy(), member("a", true, false), member("b", false, true), member("c", false, true))
	crashing[0].Failure = &Failure{Reason: "CrashLoopBackOff", Message: "pod etcd-a on node a: container etcd"}
	d = Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Components: crashing, Now: t0.Add(20 * time.Second)})
	if d.Status.RolledBack == nil || d.Status.RolledBack.Component != "etcd" || d.Target != controlplane.TargetLastKnownGood {
		t.Fatalf("a crash-looping member: %+v, want etcd rolled back", d)
	}
	if len(d.Apply) > 0 {
		t.Errorf("etcd's rollback applied a workload: %q", d.Apply)
	}
	if c := condition(t, d.Status, controlplane.ConditionRolledBack); c.Reason != "CrashLoopBackOff" {
		t.Errorf("RolledBack = %+v", c)
	}
	st = d.Status
	// Against the last-known-good flags a is the one that differs; b and c are Ready, so
	// a goes back at once.
	d = Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Now: t0.Add(22 * time.Second),
		Components: withEtcd(healthy(), member("a", false, false), member("b", true, true), member("c", true, true))})
	m := d.Status.Etcd.Member
	if m == nil || m.Node != "a" || m.Target != controlplane.TargetLastKnownGood || !maps.Equal(m.ExtraArgs, old) || m.Generation != 1 {
		t.Fatalf("rollback step: %+v, want a changed back to generation 1's flags", m)
	}
}

// No member changes while one that needs no change is not Ready: that one and the
// changed one down at once would be two of three.
func TestNoMemberChangesWhileAnotherIsNotReady(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec("")), Etcd: snapshotFor(2)}
	d := Decide(State{Generation: 2, Spec: etcdSpec(map[string]string{"snapshot-count": "5000"}), Status: st, Now: t0,
		Components: withEtcd(healthy(), member("a", true, false), member("b", false, true), member("c", false, true))})
	if d.Status.Etcd.Member != nil {
		t.Fatalf("member %+v named while a is not Ready", d.Status.Etcd.Member)
	}
	if c := condition(t, d.Status, controlplane.ConditionProgressing); !strings.Contains(c.Message, "quorum") {
		t.Errorf("Progressing = %+v, want it to say it waits for quorum", c)
	}
}

// A member named stays the one to change until it runs the target, Ready, whatever
// happens meanwhile: a new generation, or a rollback, names it again with the new flags
// rather than another member its agent may restart at the same time.
func TestTheNamedMemberStaysNamedUntilDone(t *testing.T) {
	st := controlplane.Status{LastKnownGood: good(1, spec("")), Etcd: snapshotFor(3)}
	st.Etcd.Member = &controlplane.EtcdMemberChange{Node: "b", Generation: 2, Target: controlplane.TargetSpec,
		ExtraArgs: map[string]string{"snapshot-count": "5000"}, Since: metav1.NewTime(t0)}
	st.Rollout = &controlplane.RolloutStatus{Generation: 3, Components: []string{"etcd"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}
	// Generation 3 wants other flags; a (which ran generation 2) differs from it too and
	// sorts first, but b was named and its mirror pod does not show the change yet.
	args := map[string]string{"snapshot-count": "6000"}
	d := Decide(State{Generation: 3, Spec: etcdSpec(args), Status: st, Now: t0.Add(time.Second),
		Components: withEtcd(healthy(), member("a", false, true), member("b", false, true), member("c", false, true))})
	m := d.Status.Etcd.Member
	if m == nil || m.Node != "b" || m.Generation != 3 || !maps.Equal(m.ExtraArgs, args) || !m.Since.Equal(&metav1.Time{Time: t0}) {
		t.Fatalf("member %+v, want b named again with generation 3's flags, its clock going on", m)
	}
}

// The roll-out timeout counts per member, from when it was named: a slow three-member
// roll is not rolled back for the time the first two took.
func TestEtcdTimeoutCountsPerMember(t *testing.T) {
	args := map[string]string{"snapshot-count": "5000"}
	st := controlplane.Status{LastKnownGood: good(1, spec("")), Etcd: snapshotFor(2)}
	st.Rollout = &controlplane.RolloutStatus{Generation: 2, Components: []string{"etcd"}, Target: controlplane.TargetSpec, Started: metav1.NewTime(t0)}
	st.Etcd.Member = &controlplane.EtcdMemberChange{Node: "c", Generation: 2, Target: controlplane.TargetSpec, ExtraArgs: args,
		Since: metav1.NewTime(t0.Add(290 * time.Second))}
	d := Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Now: t0.Add(320 * time.Second),
		Components: withEtcd(healthy(), member("a", true, true), member("b", true, true), member("c", true, false))})
	if d.Status.RolledBack != nil {
		t.Fatalf("rolled back 30 s after c was named: %+v", d.Status.RolledBack)
	}
	d = Decide(State{Generation: 2, Spec: etcdSpec(args), Status: st, Now: t0.Add(600 * time.Second),
		Components: withEtcd(healthy(), member("a", true, true), member("b", true, true), member("c", true, false))})
	if d.Status.RolledBack == nil || d.Status.RolledBack.Reason != ReasonTimeout {
		t.Fatalf("c not Ready 310 s after it was named: %+v, want a rollback for Timeout", d.Status.RolledBack)
	}
}
