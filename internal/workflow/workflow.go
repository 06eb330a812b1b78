// Package workflow runs a long command as an ordered list of named phases. Each phase
// gets the command's typed data; --skip-phases and `<command> phase <name>` come from the
// list itself, so the help text, the runner and the phases can never disagree.
package workflow

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/selfkube/selfkube/internal/status"
)

// Phase is one named step of a workflow over data D.
type Phase[D any] struct {
	// Name is what --skip-phases and `phase <name>` use: lower-case, dash-separated.
	Name string
	// Short is one line for help and progress output.
	Short string
	// Run does the phase's work. It must converge: a second run is a no-op that says
	// what it reused.
	Run func(ctx context.Context, d D) error
	// RunIf, when set, decides whether the phase applies to this run (e.g. local etcd only).
	RunIf func(d D) bool
}

// Workflow is an ordered list of phases.
type Workflow[D any] struct {
	Phases []Phase[D]
}

// Names lists the phase names in order.
func (w *Workflow[D]) Names() []string {
	names := make([]string, 0, len(w.Phases))
	for _, p := range w.Phases {
		names = append(names, p.Name)
	}
	return names
}

// Options select which phases run.
type Options struct {
	// Skip names phases not to run.
	Skip []string
	// Only, when set, runs just that one phase.
	Only string
	// Status shows progress; nil is quiet.
	Status *status.Printer
	// Finished, when set, is told each phase that succeeded, before the next one runs
	// (a command records it, so that a re-run knows how far an earlier one got). Its
	// error stops the run.
	Finished func(phase string) error
}

// Run runs the selected phases in order and stops at the first error, which names the phase.
func (w *Workflow[D]) Run(ctx context.Context, d D, opts Options) error {
	names := w.Names()
	for _, s := range append(slices.Clone(opts.Skip), opts.Only) {
		if s != "" && !slices.Contains(names, s) {
			return fmt.Errorf("unknown phase %q: the phases are %s", s, strings.Join(names, ", "))
		}
	}
	for _, p := range w.Phases {
		if opts.Only != "" && p.Name != opts.Only || slices.Contains(opts.Skip, p.Name) {
			continue
		}
		if p.RunIf != nil && !p.RunIf(d) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before phase %s: %w", p.Name, err)
		}
		step := opts.Status.Start(p.Short)
		err := p.Run(ctx, d)
		step.Done(&err)
		if err != nil {
			return fmt.Errorf("phase %s: %w", p.Name, err)
		}
		if opts.Finished != nil {
			if err := opts.Finished(p.Name); err != nil {
				return fmt.Errorf("phase %s succeeded, but recording it failed: %w", p.Name, err)
			}
		}
	}
	return nil
}
