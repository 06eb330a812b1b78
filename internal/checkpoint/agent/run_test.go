package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/checkpoint/checkpointtest"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/manifests"
)

// TestActivateAtBoot: before the kubelet starts, a checkpoint is activated only when the
// API does not answer, its parent does not run here, and it is complete on disk and not
// active yet. Boot cannot list pods, so what it would learn from them (bound, Ready,
// Ready elsewhere) never changes its decision.
func TestActivateAtBoot(t *testing.T) {
	tests := []struct {
		name string
		seen checkpoint.Observed
		want bool
	}{{
		name: "reboot during an outage: the kubelet needs the checkpoint",
		seen: checkpoint.Observed{Present: true},
		want: true,
	}, {
		name: "the API answers: the agent decides once it runs",
		seen: checkpoint.Observed{APIReachable: true, Present: true},
	}, {
		name: "the parent already runs here (only the kubelet restarted)",
		seen: checkpoint.Observed{ParentRunning: true, Present: true},
	}, {
		name: "already active",
		seen: checkpoint.Observed{Present: true, Active: true},
	}, {
		name: "not complete on disk",
		seen: checkpoint.Observed{},
	}, {
		name: "a static pod left without its checkpoint is not retired at boot",
		seen: checkpoint.Observed{Active: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.seen.At = t0
			if got := activateAtBoot(tt.seen); got != tt.want {
				t.Errorf("activateAtBoot(%+v) = %v, want %v", tt.seen, got, tt.want)
			}
		})
	}

	// Every observation, including what Boot cannot know.
	for bits := 0; bits < 1<<7; bits++ {
		seen := checkpoint.Observed{
			At:             t0,
			APIReachable:   bits&1 != 0,
			ParentRunning:  bits&2 != 0,
			Present:        bits&4 != 0,
			Active:         bits&8 != 0,
			ParentBound:    bits&16 != 0,
			ParentReady:    bits&32 != 0,
			ReadyElsewhere: bits&64 != 0,
		}
		want := !seen.APIReachable && !seen.ParentRunning && seen.Present && !seen.Active
		if got := activateAtBoot(seen); got != want {
			t.Errorf("activateAtBoot(%+v) = %v, want %v", seen, got, want)
		}
	}
}

// The agent under component.Run: Init checks its fields, Start syncs at once and keeps
// syncing, the runner serves its /healthz and /metrics, and Stop ends the syncs and
// releases what Components opened, leaving the checkpoints on disk.
func TestAgentLifecycle(t *testing.T) {
	if err := (&Agent{}).Init(context.Background()); err == nil || !strings.Contains(err.Error(), "no node name") {
		t.Errorf("Init of an empty agent = %v, want the missing fields", err)
	}

	pod, _, secret := checkpointtest.APIServerPod(t)
	store := newStore(t)
	released := 0
	a := &Agent{
		Client:    fake.NewClientset(pod, secret),
		Runtime:   &fakeRuntime{local: Local{Running: map[string]bool{checkpoint.CheckpointAPIServer: true}, Containers: map[string]bool{"0a1b2c3d": true}}},
		Store:     store,
		NodeName:  testNode,
		Namespace: manifests.Namespace,
		Interval:  10 * time.Millisecond, Timeout: time.Minute, RefreshEvery: time.Hour,
		Log:     slog.New(slog.DiscardHandler),
		Metrics: NewMetrics(),
		release: func() { released++ },
	}
	if err := a.Start(context.Background()); err == nil {
		t.Error("Start before Init succeeded")
	}
	if err := a.Healthy(); err == nil {
		t.Error("healthy before any sync")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- component.Run(ctx, component.Options{Address: addr, Metrics: a.Metrics}, a)
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !store.Present(checkpoint.CheckpointAPIServer) {
		if time.Now().After(deadline) {
			t.Fatal("the running agent never wrote the checkpoint")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The checkpoint is written within a sync; the sync is recorded when it ends.
	for code, body := get("/healthz"); code != http.StatusOK; code, body = get("/healthz") {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz = %d %q once syncing", code, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "selfkube_checkpointer_api_reachable 1\n") ||
		!strings.Contains(body, `selfkube_checkpointer_writes_total{checkpoint="`+checkpoint.CheckpointAPIServer+`"} 1`) {
		t.Errorf("/metrics = %d:\n%s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if released != 1 {
		t.Errorf("Stop released %d times, want once", released)
	}
	if !store.Present(checkpoint.CheckpointAPIServer) {
		t.Error("Stop removed the checkpoint")
	}
	if err := a.Init(context.Background()); err == nil {
		t.Error("Init after Stop succeeded")
	}
}

// Components: the agent alone, or after its Events when there is a pod to record on; the
// agent's metrics and /healthz on --metrics-bind-address.
func TestComponents(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Kubeconfig, opts.NodeName = kc, "n1"
	log := slog.New(slog.DiscardHandler)

	run, cs, err := Components(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 {
		t.Fatalf("%d components without --pod-name, want the agent alone", len(cs))
	}
	a, ok := cs[0].(*Agent)
	if !ok || a.NodeName != "n1" || a.Events != nil {
		t.Fatalf("component %#v, want the agent of node n1 without Events", cs[0])
	}
	if run.Address != opts.MetricsBindAddress || run.Metrics != a.Metrics {
		t.Errorf("runner options %+v do not serve the agent's metrics on %s", run, opts.MetricsBindAddress)
	}
	if err := a.Stop(); err != nil { // closes the CRI connection
		t.Fatal(err)
	}

	opts.PodName = "selfkube-checkpointer-x"
	_, cs, err = Components(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("%d components with --pod-name, want Events then the agent", len(cs))
	}
	if _, ok := cs[0].(*component.Events); !ok {
		t.Errorf("first component %T, want *component.Events (started before the agent)", cs[0])
	}
	if a, ok := cs[1].(*Agent); !ok || a.Events == nil {
		t.Errorf("second component %#v, want the agent recording Events", cs[1])
	}
	for _, c := range cs {
		_ = c.Stop()
	}

	t.Setenv("NODE_NAME", "")
	opts.NodeName = ""
	if _, _, err := Components(opts, log); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("Components without a node name: %v", err)
	}
}
