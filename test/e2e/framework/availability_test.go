package framework

import (
	"strings"
	"testing"
	"time"

	"github.com/selfkube/selfkube/test/e2e/probe"
)

func TestAvailabilityTableSumsRunsPerIdentity(t *testing.T) {
	tab := NewAvailabilityTable("kubeadm", "selfkube")
	answered := time.Unix(100, 0)
	run := func(failed int, slowest time.Duration) probe.Report {
		return probe.Report{Targets: []probe.TargetReport{
			{Name: "RBAC user", WindowStart: answered, Counted: 100, Failed: failed, Max: slowest},
			{Name: "kubelet", WindowStart: answered, Counted: 50, Max: 10 * time.Millisecond},
		}}
	}
	tab.Add("selfkube", "roll-out", run(0, 200*time.Millisecond))
	tab.Add("selfkube", "roll-out", run(0, 300*time.Millisecond))
	tab.Add("kubeadm", "roll-out", run(7, 2*time.Second))
	tab.Add("kubeadm", "reboot", probe.Report{Targets: []probe.TargetReport{{Name: "RBAC user"}}})

	md := tab.Markdown()
	for _, want := range []string{
		"| roll-out — RBAC user | 7 of 100 failed, 2.00 s (n=1) | 0 of 200 failed, 0.30 s (n=2) |",
		"| roll-out — kubelet | 0 of 50 failed, 0.01 s (n=1) | 0 of 100 failed, 0.01 s (n=2) |",
		"| reboot — RBAC user | never answered in 1 of 1 runs; 0 of 0 failed, 0.00 s | — |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing row %q in:\n%s", want, md)
		}
	}
	if strings.Index(md, "roll-out — RBAC user") > strings.Index(md, "reboot — RBAC user") {
		t.Errorf("rows are not in the order they were first added:\n%s", md)
	}
}
