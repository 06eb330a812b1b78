package workflow

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/selfkube/selfkube/internal/status"
)

type data struct {
	ran   []string
	local bool
}

func testWorkflow(failAt string) *Workflow[*data] {
	ph := func(name string) Phase[*data] {
		return Phase[*data]{Name: name, Short: "doing " + name, Run: func(_ context.Context, d *data) error {
			d.ran = append(d.ran, name)
			if name == failAt {
				return errors.New("boom")
			}
			return nil
		}}
	}
	etcd := ph("etcd")
	etcd.RunIf = func(d *data) bool { return d.local }
	return &Workflow[*data]{Phases: []Phase[*data]{ph("preflight"), ph("certs"), etcd, ph("wait")}}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		local   bool
		failAt  string
		wantRan []string
		wantErr string
	}{
		{name: "all in order", local: true, wantRan: []string{"preflight", "certs", "etcd", "wait"}},
		{name: "RunIf false skips", wantRan: []string{"preflight", "certs", "wait"}},
		{name: "skip", local: true, opts: Options{Skip: []string{"certs", "etcd"}}, wantRan: []string{"preflight", "wait"}},
		{name: "only", local: true, opts: Options{Only: "certs"}, wantRan: []string{"certs"}},
		{name: "stops at failure and names it", local: true, failAt: "certs", wantRan: []string{"preflight", "certs"}, wantErr: "phase certs: boom"},
		{name: "unknown skip", opts: Options{Skip: []string{"cert"}}, wantErr: `unknown phase "cert": the phases are preflight, certs, etcd, wait`},
		{name: "unknown only", opts: Options{Only: "nope"}, wantErr: `unknown phase "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &data{local: tt.local}
			err := testWorkflow(tt.failAt).Run(context.Background(), d, tt.opts)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if d := cmp.Diff(tt.wantRan, d.ran); d != "" {
				t.Errorf("phases run (-want +got):\n%s", d)
			}
		})
	}
}

func TestProgressMarksFailure(t *testing.T) {
	var buf bytes.Buffer
	_ = testWorkflow("certs").Run(context.Background(), &data{}, Options{Status: status.New(&buf)})
	out := buf.String()
	if !strings.Contains(out, "✓ doing preflight") || !strings.Contains(out, "✗ doing certs") || strings.Contains(out, "doing wait") {
		t.Errorf("progress output:\n%s", out)
	}
}

func TestCancelledContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := &data{}
	if err := testWorkflow("").Run(ctx, d, Options{}); !errors.Is(err, context.Canceled) || len(d.ran) != 0 {
		t.Errorf("err = %v, ran %v", err, d.ran)
	}
}

func TestFinishedHearsEachSucceededPhase(t *testing.T) {
	var finished []string
	record := func(phase string) error { finished = append(finished, phase); return nil }
	d := &data{}
	if err := testWorkflow("etcd").Run(context.Background(), d, Options{Finished: record}); err != nil {
		t.Fatal(err) // etcd does not run (RunIf false), so nothing fails
	}
	if diff := cmp.Diff([]string{"preflight", "certs", "wait"}, finished); diff != "" {
		t.Errorf("finished (-want +got):\n%s", diff)
	}

	finished = nil
	d = &data{local: true}
	err := testWorkflow("etcd").Run(context.Background(), d, Options{Finished: record})
	if err == nil || len(finished) != 2 || finished[1] != "certs" {
		t.Errorf("failing phase: err %v, finished %v (want preflight, certs)", err, finished)
	}

	// A record that cannot be written stops the run before the next phase.
	d = &data{local: true}
	err = testWorkflow("").Run(context.Background(), d, Options{Finished: func(p string) error {
		if p == "certs" {
			return errors.New("disk full")
		}
		return nil
	}})
	if err == nil || !strings.Contains(err.Error(), "disk full") || len(d.ran) != 2 {
		t.Errorf("err %v, ran %v (want the run stopped after certs)", err, d.ran)
	}
}
