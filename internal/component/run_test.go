package component

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// journal records the calls of every fake, in order.
type journal struct {
	mu    sync.Mutex
	calls []string
}

func (j *journal) add(call string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, call)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string{}, j.calls...)
}

// fake is a Component that records its calls and fails where told.
type fake struct {
	name                       string
	j                          *journal
	initErr, startErr, stopErr error
	life                       Lifecycle
}

func (f *fake) Init(context.Context) error {
	return f.life.Init(func() error { f.j.add("init " + f.name); return f.initErr })
}

func (f *fake) Start(context.Context) error {
	return f.life.Start(func() error { f.j.add("start " + f.name); return f.startErr })
}

func (f *fake) Stop() error {
	return f.life.Stop(func(from State) error { f.j.add("stop " + f.name + " from " + from.String()); return f.stopErr })
}

// readyFake is a fake that is also a Readier, a Healther and a Failer.
type readyFake struct {
	fake
	ready, healthy atomic.Bool
	failed         chan error
}

func (f *readyFake) Ready() error {
	if f.ready.Load() {
		return nil
	}
	return errors.New(f.name + " waits for something")
}

func (f *readyFake) Healthy() error {
	if f.healthy.Load() {
		return nil
	}
	return errors.New(f.name + " is stuck")
}

func (f *readyFake) Failed() <-chan error { return f.failed }

func fakes(j *journal, names ...string) []*fake {
	var out []*fake
	for _, n := range names {
		out = append(out, &fake{name: n, j: j})
	}
	return out
}

func components(fs []*fake) []Component {
	var out []Component
	for _, f := range fs {
		out = append(out, f)
	}
	return out
}

// eventually waits for cond; the deadline only bounds a broken test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runAsync starts Run and returns its result channel once every component started.
func runAsync(t *testing.T, ctx context.Context, opts Options, j *journal, last string, cs ...Component) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, cs...) }()
	eventually(t, "every component to start", func() bool {
		calls := j.get()
		return len(calls) > 0 && calls[len(calls)-1] == "start "+last
	})
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func TestRunOrder(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "a", "b", "c")
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, ctx, Options{}, j, "c", components(fs)...)
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	want := []string{
		"init a", "init b", "init c",
		"start a", "start b", "start c",
		"stop c from running", "stop b from running", "stop a from running",
	}
	if diff := cmp.Diff(want, j.get()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	for _, f := range fs {
		if got := f.life.State(); got != Stopped {
			t.Errorf("%s ends %s, want stopped", f.name, got)
		}
	}
}

func TestRunFailures(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		mutate  func(a, b, c *fake)
		wantErr error
		want    []string
	}{{
		name:    "Init fails: nothing starts, the initialized and the rest are stopped",
		mutate:  func(_, b, _ *fake) { b.initErr = boom },
		wantErr: boom,
		want:    []string{"init a", "init b", "stop c from created", "stop b from created", "stop a from initialized"},
	}, {
		name:    "Start fails: every component is stopped, in reverse",
		mutate:  func(_, b, _ *fake) { b.startErr = boom },
		wantErr: boom,
		want: []string{"init a", "init b", "init c", "start a", "start b",
			"stop c from initialized", "stop b from initialized", "stop a from running"},
	}, {
		name: "the first error wins over a later Stop error",
		mutate: func(a, b, _ *fake) {
			a.initErr = boom
			b.stopErr = errors.New("second")
		},
		wantErr: boom,
		want:    []string{"init a", "stop c from created", "stop b from created", "stop a from created"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			fs := fakes(j, "a", "b", "c")
			tc.mutate(fs[0], fs[1], fs[2])
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Run(ctx, Options{}, components(fs)...) }()
			if err := wait(t, done); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Run = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, j.get()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

// A Stop error is returned when nothing else failed.
func TestRunStopError(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "a", "b")
	stopErr := errors.New("cannot stop")
	fs[0].stopErr = stopErr
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, ctx, Options{}, j, "b", components(fs)...)
	cancel()
	if err := wait(t, done); !errors.Is(err, stopErr) {
		t.Fatalf("Run = %v, want %v", err, stopErr)
	}
}

// A Failer that fails ends Run with its error; every component is stopped.
func TestRunFailer(t *testing.T) {
	j := &journal{}
	a := &fake{name: "a", j: j}
	b := &readyFake{fake: fake{name: "b", j: j}, failed: make(chan error, 1)}
	done := runAsync(t, context.Background(), Options{}, j, "b", a, b)
	lost := errors.New("lost the lease")
	b.failed <- lost
	if err := wait(t, done); !errors.Is(err, lost) {
		t.Fatalf("Run = %v, want %v", err, lost)
	}
	want := []string{"init a", "init b", "start a", "start b", "stop b from running", "stop a from running"}
	if diff := cmp.Diff(want, j.get()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// SIGTERM ends Run like the end of ctx.
func TestRunSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			j := &journal{}
			fs := fakes(j, "a")
			done := runAsync(t, context.Background(), Options{}, j, "a", components(fs)...)
			// Run has registered for the signal before the components started.
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			if err := wait(t, done); err != nil {
				t.Fatalf("Run after %s: %v", sig, err)
			}
			if got := fs[0].life.State(); got != Stopped {
				t.Errorf("after %s the component is %s, want stopped", sig, got)
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRunServesHealthReadinessMetrics(t *testing.T) {
	j := &journal{}
	plain := &fake{name: "plain", j: j}
	r := &readyFake{fake: fake{name: "r", j: j}}
	r.healthy.Store(true)
	addr := freeAddr(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "selfkube_test_total 7\n") })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(t, ctx, Options{Address: addr, Metrics: metrics}, j, "r", plain, r)
	base := "http://" + addr

	eventually(t, "/healthz to answer 200", func() bool { code, _ := get(t, base+"/healthz"); return code == http.StatusOK })
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "r waits for something") {
		t.Errorf("/readyz while r is not ready = %d %q, want 503 with its reason", code, body)
	}
	r.ready.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once r is ready = %d %q, want 200", code, body)
	}
	r.healthy.Store(false)
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "r is stuck") {
		t.Errorf("/healthz while r is stuck = %d %q, want 503 with its reason", code, body)
	}
	r.healthy.Store(true)
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || body != "selfkube_test_total 7\n" {
		t.Errorf("/metrics = %d %q", code, body)
	}

	cancel()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, base+"/healthz"); code != 0 {
		t.Errorf("/healthz answers %d after Run returned; want the listener closed", code)
	}
}

// Before every component started, /healthz and /readyz say so.
func TestHealthBeforeRunning(t *testing.T) {
	s := &server{components: []Component{&readyFake{}}}
	for name, check := range map[string]func() error{"unhealthy": s.unhealthy, "unready": s.unready} {
		if err := check(); !errors.Is(err, errNotRunning) {
			t.Errorf("%s before running = %v, want %v", name, err, errNotRunning)
		}
	}
	// Without a Metrics handler there is no /metrics.
	addr := freeAddr(t)
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, ctx, Options{Address: addr}, j, "a", components(fakes(j, "a"))...)
	if code, _ := get(t, "http://"+addr+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without a handler = %d, want 404", code)
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

// A listener that cannot bind fails Run before any Init, and still stops every component.
func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	j := &journal{}
	err = Run(context.Background(), Options{Address: ln.Addr().String()}, components(fakes(j, "a", "b"))...)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Run on a taken address = %v, want an error naming it", err)
	}
	if diff := cmp.Diff([]string{"stop b from created", "stop a from created"}, j.get()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// Two replicas of a Deployment on one host network share the health port with SharePort
// (without it the second fails, as TestRunListenError shows).
func TestRunSharesThePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	for _, name := range []string{"a", "b"} {
		go func() {
			errs <- Run(ctx, Options{Address: addr, SharePort: true}, components(fakes(&journal{}, name))...)
		}()
	}
	select {
	case err := <-errs:
		t.Fatalf("a replica stopped: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz of the shared port: %v", err)
	}
	resp.Body.Close()
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// blockingStop is a fake whose Stop waits until release is closed.
type blockingStop struct {
	fake
	stopping, release chan struct{}
}

func (b *blockingStop) Stop() error {
	close(b.stopping)
	<-b.release
	return b.fake.Stop()
}

// Once Stop begins, /healthz and /readyz fail: the agent is going away.
func TestHealthWhileStopping(t *testing.T) {
	j := &journal{}
	b := &blockingStop{fake: fake{name: "b", j: j}, stopping: make(chan struct{}), release: make(chan struct{})}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(t, ctx, Options{Address: addr}, j, "b", b)
	eventually(t, "/healthz to answer 200", func() bool { code, _ := get(t, "http://"+addr+"/healthz"); return code == http.StatusOK })
	cancel()
	<-b.stopping
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, "http://"+addr+path); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
			t.Errorf("%s while stopping = %d %q, want 503 not running", path, code, body)
		}
	}
	close(b.release)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}
