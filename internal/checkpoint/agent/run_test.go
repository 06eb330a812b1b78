package agent

import (
	"testing"

	"github.com/selfkube/selfkube/internal/checkpoint"
)

// TestActivateAtBoot: before the kubelet starts, a checkpoint is activated only when the
// API does not answer, its parent does not run here, and it is complete on disk and not
// active yet. Boot cannot list pods, so what it would learn from them (bound, Ready,
// Ready elsewhere) never changes its decision.
func TestActivateAtBoot(t *testing.T) {
	tests := []struct {
		name string
		seen checkpoint.Observed
		want bool
	}{{
		name: "reboot during an outage: the kubelet needs the checkpoint",
		seen: checkpoint.Observed{Present: true},
		want: true,
	}, {
		name: "the API answers: the agent decides once it runs",
		seen: checkpoint.Observed{APIReachable: true, Present: true},
	}, {
		name: "the parent already runs here (only the kubelet restarted)",
		seen: checkpoint.Observed{ParentRunning: true, Present: true},
	}, {
		name: "already active",
		seen: checkpoint.Observed{Present: true, Active: true},
	}, {
		name: "not complete on disk",
		seen: checkpoint.Observed{},
	}, {
		name: "a static pod left without its checkpoint is not retired at boot",
		seen: checkpoint.Observed{Active: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.seen.At = t0
			if got := activateAtBoot(tt.seen); got != tt.want {
				t.Errorf("activateAtBoot(%+v) = %v, want %v", tt.seen, got, tt.want)
			}
		})
	}

	// Every observation, including what Boot cannot know.
	for bits := 0; bits < 1<<7; bits++ {
		seen := checkpoint.Observed{
			At:             t0,
			APIReachable:   bits&1 != 0,
			ParentRunning:  bits&2 != 0,
			Present:        bits&4 != 0,
			Active:         bits&8 != 0,
			ParentBound:    bits&16 != 0,
			ParentReady:    bits&32 != 0,
			ReadyElsewhere: bits&64 != 0,
		}
		want := !seen.APIReachable && !seen.ParentRunning && seen.Present && !seen.Active
		if got := activateAtBoot(seen); got != want {
			t.Errorf("activateAtBoot(%+v) = %v, want %v", seen, got, want)
		}
	}
}
