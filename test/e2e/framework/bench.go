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
	StepCPRebootRBAC     = "control-plane reboot: kubelet start → first 2xx of an RBAC user (not system:masters), new connection per request"
	StepCPRebootControl  = "control-plane reboot: kubelet start → control plane reconverged (its pods restarted and Ready, no checkpoint left)"
	StepCPRebootSystem   = "control-plane reboot: kubelet start → all kube-system pods Ready"
	StepWorkerRebootPods = "worker reboot: kubelet start → its pods running again"
	StepCPChange         = "apiserver flag change through the ControlPlane resource: patch → rolled out (10 s soak included)"
	StepCPRollback       = "bad apiserver change (unknown flag) through the ControlPlane resource: patch → rolled back, serving"
	StepCPChange3        = "three control-plane nodes: apiserver flag change through the ControlPlane resource: patch → rolled out on every node"
	StepCPRollback3      = "three control-plane nodes: bad apiserver change (unknown flag): patch → rolled back, serving"
	StepEtcdChange3      = "three control-plane nodes: etcd flag change: patch → every member restarted with it, one at a time"
	StepUpgrade1         = "Kubernetes upgrade v1.35.4 → v1.36.3, one control-plane node (kubeadm upgrade apply / selfkube upgrade apply): command → every control-plane pod on the new version, Ready"
	StepUpgrade3         = "Kubernetes upgrade v1.35.4 → v1.36.3, three control-plane nodes (selfkube upgrade apply): command → done on every node"
	StepSnapshot1k       = "etcd snapshot save, 1,000 ConfigMaps of 0.5 KiB: command → file written and checked"
	StepRecoverReadyz1k  = "recover --from-snapshot after etcd's data was wiped, 1,000 ConfigMaps: start → /readyz serving the restored data"
	StepRecoverControl1k = "recover --from-snapshot, 1,000 ConfigMaps: start → self-hosted control plane reconverged (recover returned)"
	StepSnapshot10k      = "etcd snapshot save, 10,000 ConfigMaps: command → file written and checked"
	StepRecoverReadyz10k = "recover --from-snapshot, 10,000 ConfigMaps: start → /readyz serving the restored data"
	StepRecoverCtl10k    = "recover --from-snapshot, 10,000 ConfigMaps: start → self-hosted control plane reconverged"
)

// BenchSteps is the row order of the table.
var BenchSteps = []string{
	StepInitWall, StepInitToReady, StepJoinWall, StepJoinToReady,
	StepCPRebootReadyz, StepCPRebootRBAC, StepCPRebootControl, StepCPRebootSystem, StepWorkerRebootPods,
	StepCPChange, StepCPRollback, StepCPChange3, StepCPRollback3, StepEtcdChange3, StepUpgrade1, StepUpgrade3,
	StepSnapshot1k, StepRecoverReadyz1k, StepRecoverControl1k, StepSnapshot10k, StepRecoverReadyz10k, StepRecoverCtl10k,
}

// BenchTable collects durations per step and variant and renders them as a markdown table
// with one row per step and one column per variant.
type BenchTable struct {
	variants []string
	samples  map[string]map[string][]time.Duration // step → variant → samples
	ratio    []string                              // numerator and denominator variants
}

// AddRatio adds a last column with the ratio of the medians of two variants
// (numerator/denominator): below 1.0 the numerator is faster.
func (t *BenchTable) AddRatio(numerator, denominator string) {
	t.ratio = []string{numerator, denominator}
}

func median(ds []time.Duration) time.Duration {
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	m := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		m = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	return m
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
	if t.ratio != nil {
		fmt.Fprintf(&b, " %s / %s |", t.ratio[0], t.ratio[1])
	}
	b.WriteString("\n|---|")
	for range t.variants {
		b.WriteString("---|")
	}
	if t.ratio != nil {
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
		if t.ratio != nil {
			num, den := t.samples[s][t.ratio[0]], t.samples[s][t.ratio[1]]
			if len(num) > 0 && len(den) > 0 && median(den) > 0 {
				fmt.Fprintf(&b, " %.2f |", median(num).Seconds()/median(den).Seconds())
			} else {
				b.WriteString(" — |")
			}
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
	if len(sorted) == 1 {
		return seconds(sorted[0])
	}
	return fmt.Sprintf("%s (%.1f–%.1f s, n=%d)", seconds(median(sorted)), sorted[0].Seconds(), sorted[len(sorted)-1].Seconds(), len(sorted))
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
