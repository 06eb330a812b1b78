package handover

import (
	"strings"
	"testing"
	"time"
)

// TestNextExhaustive walks every combination of held conditions, before and at the
// deadline, for the gate with and without the checkpoint requirement.
func TestNextExhaustive(t *testing.T) {
	t0 := time.Unix(1000, 0)
	deadline := t0.Add(time.Minute)
	for _, required := range [][]Condition{Conditions[:5], Conditions} {
		for mask := 0; mask < 1<<len(Conditions); mask++ {
			held := map[Condition]bool{}
			for i, c := range Conditions {
				held[c] = mask&(1<<i) != 0
			}
			allRequired := true
			var wantMissing []Condition
			for _, c := range required {
				if !held[c] {
					allRequired = false
					wantMissing = append(wantMissing, c)
				}
			}
			for _, at := range []time.Time{t0, deadline.Add(-time.Nanosecond), deadline, deadline.Add(time.Hour)} {
				s := Next(New(required, deadline), Observed{At: at, Held: held})
				want := Waiting
				switch {
				case allRequired:
					want = Open // all true wins even at or after the deadline
				case !at.Before(deadline):
					want = TimedOut
				}
				if s.Phase != want {
					t.Fatalf("required %d, held %v at %v: phase %v, want %v", len(required), held, at.Sub(t0), s.Phase, want)
				}
				if len(s.Missing) != len(wantMissing) {
					t.Fatalf("missing %v, want %v", s.Missing, wantMissing)
				}
				for i := range wantMissing {
					if s.Missing[i] != wantMissing[i] {
						t.Fatalf("missing %v, want %v", s.Missing, wantMissing)
					}
				}
				if (s.Err() != nil) != (want == TimedOut) {
					t.Fatalf("Err() = %v in phase %v", s.Err(), s.Phase)
				}
			}
		}
	}
}

func TestTerminalStatesStay(t *testing.T) {
	deadline := time.Unix(100, 0)
	none := Observed{At: time.Unix(0, 0), Held: map[Condition]bool{}}
	all := Observed{At: time.Unix(0, 0), Held: map[Condition]bool{}}
	for _, c := range Conditions {
		all.Held[c] = true
	}
	open := Next(New(Conditions, deadline), all)
	if Next(open, none).Phase != Open {
		t.Error("an open gate closed again: teardown could start twice or never")
	}
	timedOut := Next(New(Conditions, deadline), Observed{At: deadline, Held: map[Condition]bool{}})
	if Next(timedOut, all).Phase != TimedOut {
		t.Error("a timed-out gate opened later: init already reported failure")
	}
}

func TestErrNamesWhatNeverHeld(t *testing.T) {
	deadline := time.Unix(100, 0)
	held := map[Condition]bool{APIServerPodReady: true, SchedulerReady: true, ControllerManagerReady: true, NodeReady: true}
	s := Next(New(Conditions[:5], deadline), Observed{At: deadline, Held: held})
	err := s.Err()
	if err == nil || !strings.Contains(err.Error(), string(APIServerServes)) || strings.Contains(err.Error(), string(NodeReady)) {
		t.Fatalf("Err() = %v", err)
	}
	if !strings.Contains(err.Error(), "temporary control plane is still running") {
		t.Errorf("error does not tell the user the temporary control plane was left running: %v", err)
	}
}
