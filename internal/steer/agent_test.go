package steer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/selfkube/selfkube/internal/component"
)

var _ interface {
	component.Component
	component.Readier
	component.Healther
} = (*Agent)(nil)

func TestOptionsDefaultsAndValidate(t *testing.T) {
	got := Options{CAFile: "/ca.crt"}.withDefaults()
	want := Options{Port: 6443, ProbeBase: 10300, CAFile: "/ca.crt", Proc: "/proc", Interval: 100 * time.Millisecond, ProbeTimeout: time.Second}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("the defaults with a CA: %v", err)
	}
	for _, tc := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.Port = 0 }, "port 0 is not a TCP port"},
		{func(o *Options) { o.Port = 70000 }, "port 70000 is not a TCP port"},
		{func(o *Options) { o.ProbeBase = 0 }, "probe ports 0…15 are not all TCP ports"},
		{func(o *Options) { o.ProbeBase = 65530 }, "probe ports 65530…65545 are not all TCP ports"},
		{func(o *Options) { o.Port = 10310 }, "port 10310 is one of the probe ports 10300…10315"},
		{func(o *Options) { o.CAFile = "" }, "no CA file"},
		{func(o *Options) { o.Proc = "" }, "no proc directory"},
		{func(o *Options) { o.Interval = -time.Second }, "interval -1s: must be positive"},
		{func(o *Options) { o.ProbeTimeout = 0 }, "probe timeout 0s: must be positive and below 30s"},
		{func(o *Options) { o.ProbeTimeout = time.Minute }, "probe timeout 1m0s"},
	} {
		o := want
		tc.change(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", o, err, tc.want)
		}
	}
	// Every problem at once.
	err := Options{}.Validate()
	for _, part := range []string{"port 0", "probe ports", "no CA file", "no proc", "interval", "probe timeout"} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("zero options: %v, want it to mention %q", err, part)
		}
	}
}

func TestAgentInitErrorsAndOrder(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "no CA file"},
		{Options{CAFile: filepath.Join(dir, "missing.crt")}, "reading the CA"},
		{Options{CAFile: notPEM}, "holds no PEM certificate"},
	} {
		a := NewAgent(tc.opts)
		err := a.Init(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
		if err := a.Stop(); err != nil {
			t.Errorf("Stop after a failed Init: %v", err)
		}
	}
	a := NewAgent(Options{CAFile: notPEM})
	var order *component.OrderError
	if err := a.Start(context.Background()); !errors.As(err, &order) {
		t.Errorf("Start before Init: %v, want an OrderError", err)
	}
	if a.Ready() == nil || a.Healthy() == nil {
		t.Error("an agent never started is ready or healthy")
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startAgent(t *testing.T, g *tlsGroup) *Agent {
	t.Helper()
	a := NewAgent(Options{
		Port: g.port, ProbeBase: safeProbeBase(t, 1), CAFile: g.pki.caFile, Interval: 50 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond,
		Address: loopback,
		Log:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err := a.Init(context.Background()); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("the agent needs root: %v", err)
		}
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop() })
	return a
}

// isReady says whether the agent's last round found s slotted (and ready, if ready).
func isSlotted(a *Agent, s *tlsServer) bool { _, ok := a.snapshot().Listeners[s.inode]; return ok }
func isReady(a *Agent, s *tlsServer) bool   { return a.snapshot().Listeners[s.inode].Ready }

// only says that every request went to the server named name.
func only(t *testing.T, g *tlsGroup, n int, name string) {
	t.Helper()
	if got := g.names(t, n); got[name] != n {
		t.Errorf("%d new connections went to %v, want all to %s", n, got, name)
	}
}

func TestAgentSteersNewConnectionsToReadyServers(t *testing.T) {
	g := newTLSGroup(t, newTestPKI(t))
	srvA := g.add(t, "A", http.StatusOK)
	a := startAgent(t, g)
	waitFor(t, "A is ready", func() bool { return isReady(a, srvA) })
	if err := a.Ready(); err != nil {
		t.Errorf("Ready with A taken: %v", err)
	}
	if err := a.Healthy(); err != nil {
		t.Errorf("Healthy: %v", err)
	}

	// B starts: it listens, but its /readyz fails. New connections all go to A.
	srvB := g.add(t, "B", http.StatusServiceUnavailable)
	waitFor(t, "B is slotted", func() bool { return isSlotted(a, srvB) })
	time.Sleep(10 * a.opts.Interval)
	if isReady(a, srvB) {
		t.Fatal("B, answering 503, is ready")
	}
	only(t, g, 40, "A")

	// B becomes ready: new connections go to both.
	srvB.status.Store(http.StatusOK)
	waitFor(t, "B is ready", func() bool { return isReady(a, srvB) })
	got := g.names(t, 60)
	if got["A"] == 0 || got["B"] == 0 || got["A"]+got["B"] != 60 {
		t.Errorf("with A and B ready, 60 new connections went to %v", got)
	}

	// A starts to shut down (503 while it still accepts): new connections go to B only.
	srvA.status.Store(http.StatusServiceUnavailable)
	waitFor(t, "A is not ready", func() bool { return !isReady(a, srvA) })
	only(t, g, 40, "B")

	// A closes its listener: its slot is free.
	srvA.srv.Close()
	waitFor(t, "A's slot is free", func() bool { return !isSlotted(a, srvA) })
	only(t, g, 20, "B")
	if slots := a.snapshot().Ready(); len(slots) != 1 {
		t.Errorf("ready slots %v, want B's only", slots)
	}

	// A new agent takes over from a stopped one (whose program is still attached and
	// whose map still holds B for a moment) and steers as well: C, starting, gets nothing.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	b := startAgent(t, g)
	start := time.Now()
	waitFor(t, "the new agent has B ready", func() bool { return isReady(b, srvB) })
	if took := time.Since(start); took > 800*time.Millisecond {
		t.Errorf("the new agent took %s to take B over, want a few rounds", took)
	}
	srvC := g.add(t, "C", http.StatusServiceUnavailable)
	waitFor(t, "the new agent has C slotted", func() bool { return isSlotted(b, srvC) })
	only(t, g, 40, "B")
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	// The stopped agent's program stays: still only B.
	only(t, g, 20, "B")
}

func TestAgentLeavesOutMultipathListeners(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err != nil || string(b) != "1\n" {
		t.Skip("this kernel has no MPTCP enabled")
	}
	pki := newTestPKI(t)
	l, err := reusePort(true).Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	var logs strings.Builder
	a := NewAgent(Options{Port: port, ProbeBase: safeProbeBase(t, 2), CAFile: pki.caFile, Interval: 20 * time.Millisecond, Address: loopback, Log: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	if err := a.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "MPTCP socket"); n != 1 {
		t.Errorf("%d warnings about the MPTCP listener, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "GODEBUG=multipathtcp=0") {
		t.Errorf("the warning does not say what to do:\n%s", out)
	}
	if len(a.snapshot().Listeners) != 0 {
		t.Errorf("the MPTCP listener got a slot: %v", a.snapshot().Listeners)
	}
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestAgentHealthy(t *testing.T) {
	a := NewAgent(Options{})
	if err := a.Healthy(); err == nil {
		t.Error("healthy before Start")
	}
	a.lastRound.Store(time.Now().Add(-time.Second).UnixNano())
	if err := a.Healthy(); err != nil {
		t.Errorf("a round a second ago: %v", err)
	}
	a.lastRound.Store(time.Now().Add(-31 * time.Second).UnixNano())
	if err := a.Healthy(); err == nil || !strings.Contains(err.Error(), "no round for 31s") {
		t.Errorf("no round for 31 s: %v", err)
	}
}

func TestEphemeralProbePorts(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "sys", "net", "ipv4")
	if _, err := ephemeralProbePorts(proc, 10300); err == nil {
		t.Error("no ip_local_port_range: no error")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ip_local_port_range", "32768\t60999\n")
	for _, tc := range []struct {
		base     uint16
		reserved string
		want     []int
	}{
		{10300, "", nil},
		{32752, "", nil},
		{32753, "\n", []int{32768}},
		{60990, "", []int{60990, 60991, 60992, 60993, 60994, 60995, 60996, 60997, 60998, 60999}},
		{32760, "32770-32771,32773,40000-40010\n", []int{32768, 32769, 32772, 32774, 32775}},
		{32768, "32768-32783", nil},
	} {
		write("ip_local_reserved_ports", tc.reserved)
		got, err := ephemeralProbePorts(proc, tc.base)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("base %d, reserved %q: %v, %v; want %v", tc.base, tc.reserved, got, err, tc.want)
		}
	}
	write("ip_local_reserved_ports", "1-x")
	if _, err := ephemeralProbePorts(proc, 32768); err == nil {
		t.Error("bad reserved ports: no error")
	}
	write("ip_local_port_range", "junk")
	if _, err := ephemeralProbePorts(proc, 32768); err == nil {
		t.Error("bad port range: no error")
	}
}

// loopback is where the test servers listen: the agents of the tests steer that address.
var loopback = netip.MustParseAddr("127.0.0.1")

// TestAgentLeavesOtherAddressesAlone: a listener on an address the agent does not
// steer (as init's temporary apiserver and a checkpoint listen on the node's address,
// beside the self-hosted apiserver on every address) gets no slot and no program.
func TestAgentLeavesOtherAddressesAlone(t *testing.T) {
	pki := newTestPKI(t)
	g := newTLSGroup(t, pki)
	s := g.add(t, "loopback", http.StatusOK)
	var logs strings.Builder
	a := NewAgent(Options{Port: g.port, ProbeBase: safeProbeBase(t, 3), CAFile: pki.caFile, Interval: 20 * time.Millisecond,
		Address: netip.MustParseAddr("127.0.0.2"), Log: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	if err := a.Init(context.Background()); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("the agent needs root: %v", err)
		}
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if isSlotted(a, s) {
		t.Errorf("the listener on 127.0.0.1 got a slot from an agent that steers 127.0.0.2:\n%s", logs.String())
	}
	if a.Ready() == nil {
		t.Error("the agent says it attached its program, to a listener it must leave alone")
	}
}

func TestPodVerdicts(t *testing.T) {
	const podA, podB, podC, podD, podE = "uid-a", "uid-b", "uid-c", "uid-d", "uid-e"
	s := State{Listeners: map[uint64]Entry{
		1: {Slot: 0, Passes: 3, Ready: true},         // podA: ready
		2: {Slot: 1, Failures: GateUnreadyAfter},     // podB: failed its last probes
		3: {Slot: 2, Passes: 1},                      // podC: one pass, not yet ready
		4: {Slot: 3},                                 // podC's second listener: new
		5: {Slot: 4, Failures: GateUnreadyAfter + 1}, // podD: failed…
		6: {Slot: 5, Passes: 2, Ready: true},         // …and ready on another listener
		7: {Slot: 6, Passes: 2, Ready: true},         // a process in no pod
		8: {Slot: 7, Failures: GateUnreadyAfter},     // a listener whose holder was not looked up
		9: {Slot: 8, Failures: GateUnreadyAfter - 1}, // podE: one slow probe is not enough to tell
	}}
	pods := map[uint64]types.UID{1: podA, 2: podB, 3: podC, 4: podC, 5: podD, 6: podD, 7: "", 9: podE}
	want := map[types.UID]bool{podA: true, podB: false, podD: true}
	if diff := cmp.Diff(want, podVerdicts(s, pods)); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
}
