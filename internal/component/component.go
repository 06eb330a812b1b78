// Package component is the one lifecycle of selfkube's in-cluster agents (`selfkube
// network`, `checkpointer`, `api-proxy` and `controller`): the Component interface, the
// Lifecycle guard its implementations share, the runner Run (signals, the health and
// metrics listener, the order of the calls), and what every agent needs to start: its
// API client (Client), its node (NodeName) or pod (PodName), and its Events (Events).
//
// The shape is that of k0s's pkg/component/manager.
package component

import (
	"context"
	"fmt"
	"sync"
)

// Component is one part of an in-cluster agent. Its lifecycle:
//
//	New ──▶ created ──Init──▶ initialized ──Start──▶ running ──Stop──▶ stopped
//	           │                   │                                    ▲
//	           └───────Stop────────┴────────────────────────────────────┘
//
//	Ready() (optional, Readier): nil once the component does its job, an error saying
//	what it waits for until then.
//	Healthy() (optional, Healther): nil while the component makes progress.
//	Failed() (optional, Failer): delivers why a running component ended by itself.
//
// Init checks the configuration and prepares, without starting any work. Start starts
// the work in the background and returns at once; the work ends when Start's ctx ends or
// Stop is called. Stop ends the work, waits for it and releases what the component holds;
// it is valid in every state, so that a component whose Init failed, or that never got to
// Init, still releases what its constructor opened. A second Stop is a no-op. Init and
// Start called in any other state than the diagram's return an *OrderError; nothing
// leaves stopped. Lifecycle implements these rules.
type Component interface {
	Init(ctx context.Context) error
	Start(ctx context.Context) error
	Stop() error
}

// Readier is a Component that tells whether it is ready: Ready returns nil once it does
// its job, else an error saying what it waits for. Run serves it on /readyz.
type Readier interface {
	Ready() error
}

// Healther is a Component that can be alive but stuck: Healthy returns nil while it makes
// progress, else what is wrong. Run serves it on /healthz, whose failure restarts the
// container.
type Healther interface {
	Healthy() error
}

// Failer is a Component that can end by itself while running, such as the controller
// when it loses its leader lease. The channel Failed returns delivers at most one value:
// why it ended. Run then stops every component and returns that error.
type Failer interface {
	Failed() <-chan error
}

// State is where a Component is in its lifecycle.
type State int

// The states of the diagram of Component. The zero State is Created.
const (
	Created State = iota
	Initialized
	Running
	Stopped
)

func (s State) String() string {
	switch s {
	case Created:
		return "created"
	case Initialized:
		return "initialized"
	case Running:
		return "running"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// OrderError is the error of a lifecycle method called in a state the diagram does not
// allow it in.
type OrderError struct {
	// Component names the component ("network agent"); may be empty.
	Component string
	// Method is Init or Start.
	Method string
	// State is the component's state; Want the one Method needs.
	State, Want State
}

func (e *OrderError) Error() string {
	msg := fmt.Sprintf("%s in state %s, expected %s", e.Method, e.State, e.Want)
	if e.Component != "" {
		msg = e.Component + ": " + msg
	}
	return msg
}

// Lifecycle keeps the state of one Component and enforces the diagram: a Component
// embeds (or holds) one and runs the body of each method through it. Its zero value is a
// component in state created. The body runs under Lifecycle's lock, so the methods of a
// component never run at once.
type Lifecycle struct {
	// Name names the component in an OrderError.
	Name string

	mu    sync.Mutex
	state State
}

// State returns the current state.
func (l *Lifecycle) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Init runs init if the component is created; on success the component is initialized.
// A failed init leaves it created.
func (l *Lifecycle) Init(init func() error) error {
	return l.step("Init", Created, Initialized, init)
}

// Start runs start if the component is initialized; on success the component is running.
// A failed start leaves it initialized (Stop then releases what Init prepared).
func (l *Lifecycle) Start(start func() error) error {
	return l.step("Start", Initialized, Running, start)
}

// Stop runs stop with the state the component is in, unless it is stopped already, and
// then leaves it stopped, also when stop fails: a component is stopped once.
func (l *Lifecycle) Stop(stop func(from State) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == Stopped {
		return nil
	}
	from := l.state
	l.state = Stopped
	return stop(from)
}

func (l *Lifecycle) step(method string, from, to State, body func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != from {
		return &OrderError{Component: l.Name, Method: method, State: l.state, Want: from}
	}
	if err := body(); err != nil {
		return err
	}
	l.state = to
	return nil
}
