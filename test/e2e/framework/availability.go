package framework

import (
	"fmt"
	"strings"
	"time"

	"github.com/selfkube/selfkube/test/e2e/probe"
)

// AvailabilityTable collects, per scenario and identity, what the honest prober measured in
// each variant's runs, and renders one markdown row per scenario and identity: the requests
// that failed of those counted (each target from its first 2xx) and the slowest, over
// every run of the scenario.
type AvailabilityTable struct {
	variants []string
	rows     []string                            // in the order they were first added
	cells    map[string]map[string]*availability // row → variant → sums
}

type availability struct {
	runs, counted, failed, unanswered int
	max                               time.Duration
}

// NewAvailabilityTable makes a table with one column per variant, in that order.
func NewAvailabilityTable(variants ...string) *AvailabilityTable {
	return &AvailabilityTable{variants: variants, cells: map[string]map[string]*availability{}}
}

// Add adds one run of scenario in variant: a row per target of rep.
func (t *AvailabilityTable) Add(variant, scenario string, rep probe.Report) {
	for _, tr := range rep.Targets {
		row := scenario + " — " + tr.Name
		if t.cells[row] == nil {
			t.cells[row] = map[string]*availability{}
			t.rows = append(t.rows, row)
		}
		a := t.cells[row][variant]
		if a == nil {
			a = &availability{}
			t.cells[row][variant] = a
		}
		a.runs++
		if tr.WindowStart.IsZero() {
			a.unanswered++
			continue
		}
		a.counted += tr.Counted
		a.failed += tr.Failed
		a.max = max(a.max, tr.Max)
	}
}

// Markdown renders the table; a variant that did not run a scenario shows "—".
func (t *AvailabilityTable) Markdown() string {
	if len(t.rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| scenario — identity (failed of counted requests, slowest; n runs) |")
	for _, v := range t.variants {
		fmt.Fprintf(&b, " %s |", v)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(t.variants)) + "\n")
	for _, row := range t.rows {
		fmt.Fprintf(&b, "| %s |", row)
		for _, v := range t.variants {
			a := t.cells[row][v]
			switch {
			case a == nil:
				b.WriteString(" — |")
			case a.unanswered > 0:
				fmt.Fprintf(&b, " never answered in %d of %d runs; %d of %d failed, %s |", a.unanswered, a.runs, a.failed, a.counted, seconds2(a.max))
			default:
				fmt.Fprintf(&b, " %d of %d failed, %s (n=%d) |", a.failed, a.counted, seconds2(a.max), a.runs)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func seconds2(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
