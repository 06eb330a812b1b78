package framework

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The steps of the benchmark table, in table order. Every variant (kubeadm, selfkube, …)
// measures the steps it can under these names, so the variants line up as columns.
const (
	StepInitWall         = "init: wall time"
	StepInitToReady      = "init: start → node Ready"
	StepJoinWall         = "join: wall time"
	StepJoinToReady      = "join: start → node Ready"
	StepCPRebootReadyz   = "control-plane reboot: kubelet start → apiserver /readyz"
	StepCPRebootSystem   = "control-plane reboot: kubelet start → all kube-system pods Ready"
	StepWorkerRebootPods = "worker reboot: kubelet start → its pods running again"
)

// BenchSteps is the row order of the table.
var BenchSteps = []string{
	StepInitWall, StepInitToReady, StepJoinWall, StepJoinToReady,
	StepCPRebootReadyz, StepCPRebootSystem, StepWorkerRebootPods,
}

// BenchTable collects durations per step and variant and renders them as a markdown table
// with one row per step and one column per variant.
type BenchTable struct {
	variants []string
	samples  map[string]map[string][]time.Duration // step → variant → samples
}

// NewBenchTable returns a table with columns for variants, in that order.
func NewBenchTable(variants ...string) *BenchTable {
	return &BenchTable{variants: variants, samples: map[string]map[string][]time.Duration{}}
}

// Add records one measurement of step for variant.
func (t *BenchTable) Add(variant, step string, d time.Duration) {
	if t.samples[step] == nil {
		t.samples[step] = map[string][]time.Duration{}
	}
	t.samples[step][variant] = append(t.samples[step][variant], d)
}

// Markdown renders the table. A cell is the median of its samples, with the range and the
// sample count when there are several; "—" marks a step the variant did not measure. Steps
// outside BenchSteps follow in the order of their names.
func (t *BenchTable) Markdown() string {
	steps := append([]string(nil), BenchSteps...)
	var extra []string
	for s := range t.samples {
		if !contains(BenchSteps, s) {
			extra = append(extra, s)
		}
	}
	sort.Strings(extra)
	steps = append(steps, extra...)

	var b strings.Builder
	b.WriteString("| step |")
	for _, v := range t.variants {
		fmt.Fprintf(&b, " %s |", v)
	}
	b.WriteString("\n|---|")
	for range t.variants {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, s := range steps {
		if len(t.samples[s]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s |", s)
		for _, v := range t.variants {
			fmt.Fprintf(&b, " %s |", cell(t.samples[s][v]))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func cell(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	if len(sorted) == 1 {
		return seconds(median)
	}
	return fmt.Sprintf("%s (%.1f–%.1f s, n=%d)", seconds(median), sorted[0].Seconds(), sorted[len(sorted)-1].Seconds(), len(sorted))
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
