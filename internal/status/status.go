// Package status shows people what a long command is doing: one line per step on
// stderr, with ✓ or ✗ and how long the step took. Machine-readable output goes to
// stdout and never through here.
package status

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Printer writes step lines to its writer. The zero value discards everything.
type Printer struct {
	mu  sync.Mutex
	out io.Writer
	now func() time.Time
}

// New returns a printer that writes to w (usually stderr).
func New(w io.Writer) *Printer {
	return &Printer{out: w, now: time.Now}
}

// Step is one running step.
type Step struct {
	p     *Printer
	name  string
	start time.Time
}

// Start begins a step; End or Fail finishes it.
func (p *Printer) Start(name string) *Step {
	if p == nil || p.out == nil {
		return &Step{name: name}
	}
	return &Step{p: p, name: name, start: p.now()}
}

// Infof prints a detail line under the current step.
func (p *Printer) Infof(format string, args ...any) {
	if p == nil || p.out == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "    %s\n", fmt.Sprintf(format, args...))
}

// Rename changes what the step's line will say (a step that grew while it ran).
func (s *Step) Rename(name string) { s.name = name }

// End marks the step done and prints it with its duration.
func (s *Step) End() { s.finish("✓") }

// Fail marks the step failed.
func (s *Step) Fail() { s.finish("✗") }

// Done ends the step as failed when *err is set, else as done: `defer step.Done(&err)`.
func (s *Step) Done(err *error) {
	if err != nil && *err != nil {
		s.Fail()
		return
	}
	s.End()
}

func (s *Step) finish(mark string) {
	if s.p == nil {
		return
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	d := s.p.now().Sub(s.start)
	fmt.Fprintf(s.p.out, " %s %s (%s)\n", mark, s.name, d.Round(time.Millisecond))
}
