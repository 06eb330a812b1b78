package checkpoint

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

// ages are the times a memory can hold relative to the observation: never, just now,
// within ActivateAfter, between ActivateAfter and RemoveAfter, and beyond RemoveAfter.
var ages = []time.Duration{-1, 0, ActivateAfter / 2, ActivateAfter, RemoveAfter - time.Second, RemoveAfter}

func at(now time.Time, age time.Duration) time.Time {
	if age < 0 {
		return time.Time{}
	}
	return now.Add(-age)
}

// TestNextEveryCombination walks every observation against every memory and checks the
// rules the package documents, independently of how Next is written.
func TestNextEveryCombination(t *testing.T) {
	now := t0.Add(time.Hour)
	n := 0
	for bits := 0; bits < 1<<7; bits++ {
		o := Observed{
			At:             now,
			APIReachable:   bits&1 != 0,
			ParentBound:    bits&2 != 0,
			ParentReady:    bits&4 != 0,
			ReadyElsewhere: bits&8 != 0,
			ParentRunning:  bits&16 != 0,
			Present:        bits&32 != 0,
			Active:         bits&64 != 0,
		}
		for _, running := range ages {
			for _, bound := range ages {
				for _, first := range []time.Duration{0, RemoveAfter} {
					for _, readyFor := range []time.Duration{-1, 0, RetireAfter / 2, RetireAfter} {
						s := State{FirstObserved: at(now, first), ParentLastRunning: at(now, running), ParentLastBound: at(now, bound), ParentReadySince: at(now, readyFor)}
						if !s.ParentLastBound.IsZero() && s.ParentLastBound.Before(s.FirstObserved) ||
							!s.ParentLastRunning.IsZero() && s.ParentLastRunning.Before(s.FirstObserved) {
							continue // memories are never older than the first observation
						}
						n++
						checkRules(t, fmt.Sprintf("%+v / %+v", o, s), s, o)
					}
				}
			}
		}
	}
	t.Logf("checked %d combinations", n)
}

func checkRules(t *testing.T, name string, s State, o Observed) {
	t.Helper()
	next, a := Next(s, o)
	runningRecently := o.ParentRunning || !s.ParentLastRunning.IsZero() && o.At.Sub(s.ParentLastRunning) < ActivateAfter
	lastBound := s.ParentLastBound
	if lastBound.IsZero() {
		lastBound = s.FirstObserved
	}
	unboundLong := !o.ParentBound && o.At.Sub(lastBound) >= RemoveAfter
	readyLong := o.APIReachable && o.ParentReady && !s.ParentReadySince.IsZero() && o.At.Sub(s.ParentReadySince) >= RetireAfter

	// Memory follows the observation.
	if o.ParentRunning && !next.ParentLastRunning.Equal(o.At) {
		t.Errorf("%s: running parent not remembered", name)
	}
	if o.APIReachable && o.ParentBound && !next.ParentLastBound.Equal(o.At) {
		t.Errorf("%s: bound parent not remembered", name)
	}
	if !o.APIReachable && !next.ParentLastBound.Equal(s.ParentLastBound) {
		t.Errorf("%s: an unreachable API changed what is known of the binding", name)
	}

	switch a {
	case Activate:
		if !o.Present || o.Active {
			t.Errorf("%s: activated a checkpoint that is missing or already active", name)
		}
		if runningRecently {
			t.Errorf("%s: activated although the parent ran within %s", name, ActivateAfter)
		}
		if o.APIReachable && (o.ParentBound || o.ReadyElsewhere || s.ParentLastBound.IsZero()) {
			t.Errorf("%s: activated while the API works and the parent is bound here, runs elsewhere, or was never seen", name)
		}
	case Retire:
		if !o.Active {
			t.Errorf("%s: retired an inactive checkpoint", name)
		}
		if o.Present && !(readyLong || o.APIReachable && !o.ParentBound && o.ReadyElsewhere) {
			t.Errorf("%s: retired without a parent Ready for %s to take over", name, RetireAfter)
		}
	case Remove:
		if !o.Present {
			t.Errorf("%s: removed a missing checkpoint", name)
		}
		if !o.APIReachable || o.ParentRunning || !unboundLong {
			t.Errorf("%s: removed while the API is down, the parent runs, or it was bound within %s", name, RemoveAfter)
		}
		if o.Active && !o.ReadyElsewhere {
			t.Errorf("%s: removed the last stand-in: an active checkpoint of a component Ready on no other node", name)
		}
	case None:
	default:
		t.Errorf("%s: unknown action %q", name, a)
	}

	// What must happen (liveness).
	switch {
	case !o.Present && o.Active:
		want(t, name, a, Retire)
	case !o.Present:
		want(t, name, a, None)
	case !o.APIReachable && !o.Active && !runningRecently:
		want(t, name, a, Activate) // the outage checkpoints exist for
	case o.APIReachable && !o.ParentRunning && unboundLong && (!o.Active || o.ReadyElsewhere):
		want(t, name, a, Remove)
	case o.Active && !readyLong && !o.ReadyElsewhere && o.APIReachable && !o.ParentRunning && unboundLong:
		want(t, name, a, None) // the last stand-in of a deleted workload stays until it is back
	case o.Active && readyLong:
		want(t, name, a, Retire) // hand back once the parent has served for RetireAfter
	case !o.APIReachable:
		want(t, name, a, None)
	}
}

func want(t *testing.T, name string, got, want Action) {
	t.Helper()
	if got != want {
		t.Errorf("%s: action %q, want %q", name, got, want)
	}
}

// step feeds observations to Next the way the agent does, applying each action to the
// observed checkpoint, and returns the actions in order.
type sim struct {
	s               State
	present, active bool
	actions         []Action
}

func (m *sim) observe(o Observed) Action {
	o.Present, o.Active = m.present, m.active
	var a Action
	m.s, a = Next(m.s, o)
	switch a {
	case Activate:
		m.active = true
	case Retire:
		m.active = false
	case Remove:
		m.active, m.present = false, false
	}
	if a != None {
		m.actions = append(m.actions, a)
	}
	return a
}

func TestNextScenarios(t *testing.T) {
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

	t.Run("reboot: activate at once, hand back when the self-hosted pod is Ready", func(t *testing.T) {
		m := &sim{present: true}
		want(t, "boot", m.observe(Observed{At: sec(0)}), Activate)
		// The checkpoint serves; the API still has the pre-reboot pod, Ready per its old status.
		want(t, "api back", m.observe(Observed{At: sec(4), APIReachable: true, ParentBound: true}), None)
		want(t, "parent starting", m.observe(Observed{At: sec(6), APIReachable: true, ParentBound: true, ParentRunning: true}), None)
		want(t, "parent ready", m.observe(Observed{At: sec(15), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), None)
		want(t, "parent not ready again", m.observe(Observed{At: sec(16), APIReachable: true, ParentBound: true, ParentRunning: true}), None)
		want(t, "parent ready again", m.observe(Observed{At: sec(17), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), None)
		want(t, "parent ready long enough", m.observe(Observed{At: sec(20), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), Retire)
		want(t, "steady", m.observe(Observed{At: sec(21), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), None)
	})

	t.Run("killed container restarted by the kubelet: no activation", func(t *testing.T) {
		m := &sim{present: true}
		m.observe(Observed{At: sec(0), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true})
		want(t, "killed", m.observe(Observed{At: sec(1)}), None)
		want(t, "restarted", m.observe(Observed{At: sec(2), ParentRunning: true}), None)
		want(t, "starting", m.observe(Observed{At: sec(8), ParentRunning: true}), None)
	})

	t.Run("scheduler pods deleted: the checkpoint schedules their replacements, then retires", func(t *testing.T) {
		m := &sim{present: true}
		m.observe(Observed{At: sec(0), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true})
		want(t, "deleted", m.observe(Observed{At: sec(1), APIReachable: true}), None)
		want(t, "still gone", m.observe(Observed{At: sec(4), APIReachable: true}), Activate)
		want(t, "replacement bound", m.observe(Observed{At: sec(8), APIReachable: true, ParentBound: true, ParentRunning: true}), None)
		want(t, "replacement ready", m.observe(Observed{At: sec(10), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), None)
		want(t, "replacement proven", m.observe(Observed{At: sec(13), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), Retire)
	})

	t.Run("pod moved to another node: no activation, removed after the grace period", func(t *testing.T) {
		m := &sim{present: true}
		m.observe(Observed{At: sec(0), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true})
		want(t, "moved", m.observe(Observed{At: sec(5), APIReachable: true, ReadyElsewhere: true}), None)
		want(t, "grace", m.observe(Observed{At: sec(50), APIReachable: true, ReadyElsewhere: true}), None)
		want(t, "gone", m.observe(Observed{At: sec(61), APIReachable: true, ReadyElsewhere: true}), Remove)
	})

	t.Run("workload deleted (kubectl delete ds kube-apiserver): the checkpoint stands in until it is created again", func(t *testing.T) {
		m := &sim{present: true}
		m.observe(Observed{At: sec(0), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true})
		want(t, "deleted", m.observe(Observed{At: sec(1), APIReachable: true}), None)
		want(t, "stands in", m.observe(Observed{At: sec(4), APIReachable: true}), Activate)
		for i := 5; i < 600; i++ { // ten minutes, far beyond RemoveAfter: the API answers through it
			o := Observed{At: sec(i), APIReachable: true}
			want(t, "still standing in", m.observe(o), None)
			o.Present, o.Active = true, true
			// Last bound at 0 s: the last stand-in from RemoveAfter on.
			if last, wantLast := LastStandIn(m.s, o), i >= 60; last != wantLast {
				t.Fatalf("at %d s: LastStandIn %v, want %v", i, last, wantLast)
			}
		}
		want(t, "recreated", m.observe(Observed{At: sec(600), APIReachable: true, ParentBound: true, ParentRunning: true}), None)
		want(t, "ready", m.observe(Observed{At: sec(610), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), None)
		want(t, "proven", m.observe(Observed{At: sec(614), APIReachable: true, ParentBound: true, ParentRunning: true, ParentReady: true}), Retire)
		if !m.present {
			t.Fatalf("the checkpoint was removed: %v", m.actions)
		}
	})

	t.Run("a checkpointer that starts while the API is down stands in at once", func(t *testing.T) {
		m := &sim{present: true}
		want(t, "start", m.observe(Observed{At: sec(0)}), Activate)
	})

	t.Run("an outage never removes a checkpoint", func(t *testing.T) {
		m := &sim{present: true}
		for i := 0; i < 600; i++ {
			m.observe(Observed{At: sec(i)})
		}
		if !m.present || !m.active {
			t.Fatalf("after 10 min of outage: present=%v active=%v, actions %v", m.present, m.active, m.actions)
		}
	})
}

// TestNextNeverFlaps drives a parent that starts and stops on every pattern of a short
// period and checks that between two activations the parent was absent for ActivateAfter.
func TestNextNeverFlaps(t *testing.T) {
	const steps = 12
	for pattern := 0; pattern < 1<<steps; pattern++ {
		for _, reachable := range []bool{false, true} {
			m := &sim{present: true}
			var lastRunning time.Time
			for i := 0; i < steps; i++ {
				now := t0.Add(time.Duration(i) * 500 * time.Millisecond)
				running := pattern&(1<<i) != 0
				o := Observed{At: now, APIReachable: reachable, ParentBound: true, ParentRunning: running, ParentReady: running && reachable}
				if running {
					lastRunning = now
				}
				if m.observe(o) == Activate && !lastRunning.IsZero() && now.Sub(lastRunning) < ActivateAfter {
					t.Fatalf("pattern %b reachable=%v: activated at step %d, %s after the parent ran", pattern, reachable, i, now.Sub(lastRunning))
				}
			}
		}
	}
}
