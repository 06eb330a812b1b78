package framework

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBenchTableMarkdown(t *testing.T) {
	tests := []struct {
		name     string
		variants []string
		add      func(*BenchTable)
		want     string
	}{
		{
			name:     "one sample per cell, unmeasured steps and variants",
			variants: []string{"kubeadm", "selfkube"},
			add: func(b *BenchTable) {
				b.Add("kubeadm", StepInitWall, 6100*time.Millisecond)
				b.Add("selfkube", StepInitWall, 9*time.Second)
				b.Add("kubeadm", StepJoinWall, 1700*time.Millisecond)
			},
			want: "| step | kubeadm | selfkube |\n|---|---|---|\n" +
				"| init: wall time | 6.1 s | 9.0 s |\n" +
				"| join: wall time | 1.7 s | — |\n",
		},
		{
			name:     "median and range of several samples, rows in BenchSteps order",
			variants: []string{"kubeadm"},
			add: func(b *BenchTable) {
				for _, ms := range []int{4200, 3500, 3900, 4000} {
					b.Add("kubeadm", StepCPRebootReadyz, time.Duration(ms)*time.Millisecond)
				}
				b.Add("kubeadm", StepInitWall, 6*time.Second)
			},
			want: "| step | kubeadm |\n|---|---|\n" +
				"| init: wall time | 6.0 s |\n" +
				"| control-plane reboot: kubelet start → apiserver /readyz | 4.0 s (3.5–4.2 s, n=4) |\n",
		},
		{
			name:     "steps outside the standard list come last, by name",
			variants: []string{"kubeadm"},
			add: func(b *BenchTable) {
				b.Add("kubeadm", "zz custom", time.Second)
				b.Add("kubeadm", "aa custom", 2*time.Second)
				b.Add("kubeadm", StepJoinToReady, 3*time.Second)
			},
			want: "| step | kubeadm |\n|---|---|\n" +
				"| join: start → node Ready | 3.0 s |\n" +
				"| aa custom | 2.0 s |\n" +
				"| zz custom | 1.0 s |\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBenchTable(tt.variants...)
			tt.add(b)
			if diff := cmp.Diff(tt.want, b.Markdown()); diff != "" {
				t.Errorf("Markdown() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBenchTableRatio(t *testing.T) {
	tab := NewBenchTable("kubeadm", "selfkube")
	tab.AddRatio("selfkube", "kubeadm")
	tab.Add("kubeadm", StepInitWall, 4*time.Second)
	tab.Add("selfkube", StepInitWall, 6*time.Second)
	tab.Add("kubeadm", StepCPRebootReadyz, 4*time.Second)
	md := tab.Markdown()
	for _, want := range []string{"| step | kubeadm | selfkube | selfkube / kubeadm |", "| init: wall time | 4.0 s | 6.0 s | 1.50 |",
		"| control-plane reboot: kubelet start → apiserver /readyz | 4.0 s | — | — |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}
