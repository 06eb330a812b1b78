package component

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kfake "k8s.io/client-go/kubernetes/fake"
)

// Every method in every state: what the diagram allows runs the body and moves on; the
// rest returns an *OrderError and changes nothing.
func TestLifecycleOrder(t *testing.T) {
	type call struct {
		method   string
		wantErr  bool
		wantRan  bool
		wantNext State
	}
	tests := map[State][]call{
		Created: {
			{"Init", false, true, Initialized},
			{"Start", true, false, Created},
			{"Stop", false, true, Stopped},
		},
		Initialized: {
			{"Init", true, false, Initialized},
			{"Start", false, true, Running},
			{"Stop", false, true, Stopped},
		},
		Running: {
			{"Init", true, false, Running},
			{"Start", true, false, Running},
			{"Stop", false, true, Stopped},
		},
		Stopped: {
			{"Init", true, false, Stopped},
			{"Start", true, false, Stopped},
			{"Stop", false, false, Stopped}, // a second Stop is a no-op
		},
	}
	for from, calls := range tests {
		for _, c := range calls {
			t.Run(from.String()+"/"+c.method, func(t *testing.T) {
				l := &Lifecycle{Name: "test agent", state: from}
				ran := false
				var stoppedFrom State = -1
				body := func() error { ran = true; return nil }
				var err error
				switch c.method {
				case "Init":
					err = l.Init(body)
				case "Start":
					err = l.Start(body)
				case "Stop":
					err = l.Stop(func(s State) error { stoppedFrom = s; return body() })
				}
				if (err != nil) != c.wantErr {
					t.Fatalf("%s in %s: err = %v, want error %v", c.method, from, err, c.wantErr)
				}
				if err != nil {
					var oe *OrderError
					if !errors.As(err, &oe) || oe.State != from || oe.Method != c.method {
						t.Errorf("error %v (%T) is not the OrderError of %s in %s", err, err, c.method, from)
					}
					if !strings.HasPrefix(err.Error(), "test agent: "+c.method+" in state "+from.String()) {
						t.Errorf("error %q does not name the component, the method and the state", err)
					}
				}
				if ran != c.wantRan {
					t.Errorf("body ran = %v, want %v", ran, c.wantRan)
				}
				if c.method == "Stop" && c.wantRan && stoppedFrom != from {
					t.Errorf("Stop's body got state %s, want %s", stoppedFrom, from)
				}
				if got := l.State(); got != c.wantNext {
					t.Errorf("state after %s = %s, want %s", c.method, got, c.wantNext)
				}
			})
		}
	}
}

// A failing body leaves the state where it was, except Stop, which stops once.
func TestLifecycleFailures(t *testing.T) {
	boom := errors.New("boom")
	fail := func() error { return boom }
	var l Lifecycle
	if err := l.Init(fail); !errors.Is(err, boom) || l.State() != Created {
		t.Fatalf("failed Init: err %v, state %s; want boom, created", err, l.State())
	}
	if err := l.Init(func() error { return nil }); err != nil {
		t.Fatalf("Init after a failed Init: %v", err)
	}
	if err := l.Start(fail); !errors.Is(err, boom) || l.State() != Initialized {
		t.Fatalf("failed Start: err %v, state %s; want boom, initialized", err, l.State())
	}
	if err := l.Stop(func(State) error { return boom }); !errors.Is(err, boom) || l.State() != Stopped {
		t.Fatalf("failed Stop: err %v, state %s; want boom, stopped", err, l.State())
	}
	if err := l.Stop(func(State) error { t.Error("Stop's body ran twice"); return nil }); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestNodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "from-env")
	if got, err := NodeName("from-flag"); err != nil || got != "from-flag" {
		t.Errorf("NodeName(flag) = %q, %v; the flag wins", got, err)
	}
	if got, err := NodeName(""); err != nil || got != "from-env" {
		t.Errorf("NodeName(\"\") = %q, %v; want $NODE_NAME", got, err)
	}
	t.Setenv("NODE_NAME", "")
	if got, err := NodeName(""); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("NodeName without flag and env = %q, %v; want an error naming --node-name", got, err)
	}
}

func TestPodName(t *testing.T) {
	t.Setenv("POD_NAME", "from-env")
	if got, err := PodName("from-flag"); err != nil || got != "from-flag" {
		t.Errorf("PodName(flag) = %q, %v; the flag wins", got, err)
	}
	if got, err := PodName(""); err != nil || got != "from-env" {
		t.Errorf("PodName(\"\") = %q, %v; want $POD_NAME", got, err)
	}
	t.Setenv("POD_NAME", "")
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	if got, err := PodName(""); err != nil || got != host {
		t.Errorf("PodName without flag and env = %q, %v; want the hostname %q", got, err, host)
	}
}

const kubeconfigYAML = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
users:
- name: u
  user:
    token: t
contexts:
- name: c
  context:
    cluster: c
    user: u
current-context: c
`

func TestClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(path, []byte(kubeconfigYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(path, "selfkube-test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.UserAgent != "selfkube-test" || cfg.Timeout != 0 {
		t.Errorf("RESTConfig = host %q, user agent %q, timeout %s", cfg.Host, cfg.UserAgent, cfg.Timeout)
	}
	if cfg, err := RESTConfig(path, ""); err != nil || cfg.UserAgent != "" {
		t.Errorf("RESTConfig without user agent = %q, %v; want client-go's default", cfg.UserAgent, err)
	}
	if c, err := Client(path, ""); err != nil || c == nil {
		t.Errorf("Client = %v, %v", c, err)
	}
	missing := filepath.Join(t.TempDir(), "missing.conf")
	if _, err := Client(missing, ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Client of a missing kubeconfig = %v, want an error naming it", err)
	}
}

func TestEvents(t *testing.T) {
	if err := (&Events{}).Init(context.Background()); err == nil {
		t.Error("Events without a client initialized")
	}
	e := &Events{Client: kfake.NewClientset()}
	if e.Recorder() != nil {
		t.Error("a Recorder before Init")
	}
	if err := e.Start(context.Background()); err == nil {
		t.Error("Start before Init succeeded")
	}
	if err := e.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.Recorder() == nil {
		t.Error("no Recorder after Init")
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
}
