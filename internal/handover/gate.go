// Package handover decides when the temporary static-pod control plane may be torn
// down in favour of the self-hosted one.
//
// The decision is a pure function of what was observed and when, so that every
// combination is tested. bootkube failed here in both directions: it tore the temporary
// apiserver down before the self-hosted one served (an API gap), or it waited for a state
// that could never come (a hang). The gate opens only when every condition holds at the
// same observation, and a deadline turns a wait into an error that names what never held.
//
//	          observe
//	         ┌───────┐
//	         ▼       │ some condition false, before deadline
//	     ┌─────────┐─┘
//	───▶ │ Waiting │
//	     └─────────┘
//	  all true │      │ deadline passed
//	           ▼      ▼
//	     ┌────────┐ ┌──────────┐
//	     │  Open  │ │ TimedOut │  (the temporary control plane is left running)
//	     └────────┘ └──────────┘
package handover

import (
	"fmt"
	"strings"
	"time"
)

// Condition is one thing that must hold before teardown.
type Condition string

// The gate's conditions, in the order they are reported.
const (
	// APIServerPodReady: the self-hosted kube-apiserver pod on this node is Ready.
	APIServerPodReady Condition = "self-hosted kube-apiserver pod is Ready"
	// APIServerServes: the self-hosted apiserver process itself answered /readyz on the
	// shared port (not the temporary one that shares it).
	APIServerServes Condition = "self-hosted kube-apiserver itself answers /readyz"
	// SchedulerReady: a self-hosted kube-scheduler pod is Ready.
	SchedulerReady Condition = "self-hosted kube-scheduler pod is Ready"
	// ControllerManagerReady: a self-hosted kube-controller-manager pod is Ready.
	ControllerManagerReady Condition = "self-hosted kube-controller-manager pod is Ready"
	// NodeReady: the node is Ready (the pod network and kube-proxy work).
	NodeReady Condition = "node is Ready"
	// CheckpointPresent: a checkpoint of the apiserver is on disk, so a reboot right
	// after init recovers. Always required: init always installs the checkpointer.
	CheckpointPresent Condition = "apiserver checkpoint is on disk"
)

// Conditions lists every condition in report order.
var Conditions = []Condition{APIServerPodReady, APIServerServes, SchedulerReady, ControllerManagerReady, NodeReady, CheckpointPresent}

// Observed is one observation of the cluster.
type Observed struct {
	At   time.Time
	Held map[Condition]bool
}

// Phase of the gate.
type Phase int

const (
	Waiting Phase = iota
	Open
	TimedOut
)

func (p Phase) String() string {
	return [...]string{"Waiting", "Open", "TimedOut"}[p]
}

// State is what the gate remembers between observations.
type State struct {
	Phase    Phase
	Deadline time.Time
	// Required are the conditions this hand-over waits for.
	Required []Condition
	// Missing are the required conditions that did not hold at the last observation.
	Missing []Condition
}

// New starts a gate that waits for required until deadline.
func New(required []Condition, deadline time.Time) State {
	return State{Phase: Waiting, Deadline: deadline, Required: required, Missing: required}
}

// Next is the gate's transition function. An Open or TimedOut gate stays so.
func Next(s State, o Observed) State {
	if s.Phase != Waiting {
		return s
	}
	var missing []Condition
	for _, c := range s.Required {
		if !o.Held[c] {
			missing = append(missing, c)
		}
	}
	s.Missing = missing
	switch {
	case len(missing) == 0:
		s.Phase = Open
	case !o.At.Before(s.Deadline):
		s.Phase = TimedOut
	}
	return s
}

// Err explains a timed-out gate: which conditions never held.
func (s State) Err() error {
	if s.Phase != TimedOut {
		return nil
	}
	names := make([]string, 0, len(s.Missing))
	for _, c := range s.Missing {
		names = append(names, string(c))
	}
	return fmt.Errorf("the self-hosted control plane did not take over by %s: still not true: %s; "+
		"the temporary control plane is still running: inspect the pods with `kubectl -n kube-system get pods` "+
		"and their logs, then run init again to resume",
		s.Deadline.Format(time.RFC3339), strings.Join(names, "; "))
}
