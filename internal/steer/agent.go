package steer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"github.com/selfkube/selfkube/internal/component"
)

// The defaults of Options.
const (
	DefaultPort         = 6443
	DefaultProbeBase    = 10300
	DefaultProc         = "/proc"
	DefaultInterval     = 100 * time.Millisecond
	DefaultProbeTimeout = time.Second
	// DefaultHealthPort is the loopback port of the agent's /healthz and /readyz.
	DefaultHealthPort = 10276
)

// stuckAfter is how long the loop may go without a round before Healthy fails.
const stuckAfter = 30 * time.Second

// retryAfter is how long the agent waits before it tries again to slot a listener it
// could not take (no process found, no access, the previous agent's map still holds it).
const retryAfter = time.Second

// Options configure an Agent. NewAgent gives each zero field its default.
type Options struct {
	// Port is the shared port of the listeners (default 6443).
	Port int
	// ProbeBase is the first probe source port (default 10300): ProbeBase…ProbeBase+15
	// must lie outside the node's ephemeral ports (net.ipv4.ip_local_port_range).
	ProbeBase uint16
	// CAFile is the PEM file of the CA that signed the servers' certificates (the
	// cluster CA); the probe verifies the server as its listener's address, 127.0.0.1
	// for a listener on every address.
	CAFile string
	// Proc is where the host's proc file system is (default /proc).
	Proc string
	// Interval is how often the agent looks, probes and decides (default 100 ms).
	Interval time.Duration
	// ProbeTimeout bounds each probe (default 1 s).
	ProbeTimeout time.Duration
	// Address is the address of the listeners to steer; the zero Addr means the
	// unspecified one (0.0.0.0 or ::), where the self-hosted apiservers listen. A
	// listener on another address (init's temporary apiserver, a checkpoint: both on
	// the node's address) is a reuseport group of its own that the agent leaves alone.
	Address netip.Addr
	// Gate, if set, is told after every round which pods' listeners are ready: by pod
	// UID, true for a pod with a ready listener, false for one whose listener failed its
	// last GateUnreadyAfter probes; a pod the agent cannot tell yet is absent.
	Gate interface{ Observe(map[types.UID]bool) }
	// Log receives the agent's progress; nil discards it.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.ProbeBase == 0 {
		o.ProbeBase = DefaultProbeBase
	}
	if o.Proc == "" {
		o.Proc = DefaultProc
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	return o
}

// Validate says what is wrong with o, every problem at once; zero fields are wrong
// too (NewAgent replaces them by their defaults before Init validates).
func (o Options) Validate() error {
	var errs []error
	if o.Port <= 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is not a TCP port", o.Port))
	}
	last := int(o.ProbeBase) + Slots - 1
	switch {
	case o.ProbeBase == 0 || last > 65535:
		errs = append(errs, fmt.Errorf("probe ports %d…%d are not all TCP ports", o.ProbeBase, last))
	case o.Port >= int(o.ProbeBase) && o.Port <= last:
		errs = append(errs, fmt.Errorf("port %d is one of the probe ports %d…%d", o.Port, o.ProbeBase, last))
	}
	if o.CAFile == "" {
		errs = append(errs, errors.New("no CA file: the probe must verify the servers (the cluster CA, e.g. /etc/kubernetes/pki/ca.crt)"))
	}
	if o.Proc == "" {
		errs = append(errs, errors.New("no proc directory (the host's /proc)"))
	}
	if o.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", o.Interval))
	}
	if o.ProbeTimeout <= 0 || o.ProbeTimeout >= stuckAfter {
		errs = append(errs, fmt.Errorf("probe timeout %s: must be positive and below %s", o.ProbeTimeout, stuckAfter))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("steering options: %w", err)
	}
	return nil
}

// Agent keeps the Program of a node true: it gives new connections of the shared port
// only to the listeners whose server answers /readyz. It is a component.Component, a
// component.Readier (ready once the program is loaded and attached to the port's
// listeners) and a component.Healther (unhealthy when its loop has not run for 30 s).
//
// Init validates the options, reads the CA and loads the program; Start starts the loop
// and returns at once; Stop ends the loop and unloads the program, which stays attached
// in the kernel and keeps steering by the last ready list until its listeners close.
//
// Every Interval the loop
//
//  1. lists the port's listening sockets (Proc/net/tcp{,6});
//  2. probes each slotted listener still there through its slot, all at once
//     (ProbeReady, ProbeTimeout);
//  3. decides (Decide) the next slots and ready list;
//  4. writes the ready list if it changed, empties the slots of listeners that are
//     gone, and for each new listener finds a process that holds it, takes a copy of
//     it (Duplicate), attaches the program through it (the group may be new), puts it
//     in its slot and closes the copy.
//
// The agent keeps no copy of a listener: a copy would keep the socket listening after
// its server closed it, and new connections would wait in its queue for nobody. Without
// one, a closing socket leaves the program's maps by itself.
type Agent struct {
	opts Options
	log  *slog.Logger
	life component.Lifecycle

	prog   *Program
	tls    *tls.Config
	cancel context.CancelFunc
	done   sync.WaitGroup

	attached  atomic.Bool
	lastRound atomic.Int64 // unix nanoseconds

	// The loop's own.
	state     State
	pids      map[uint64]int       // the process found holding each slotted listener
	podUIDs   map[uint64]types.UID // the pod of that process, if it is in one
	applied   []int                // the ready list the kernel has; valid if appliedOK
	appliedOK bool
	retry     map[uint64]time.Time // listeners not to try to slot before then
	excluded  map[uint64]bool      // MPTCP listeners, warned about once
	warned    map[uint64]bool      // listeners warned about (no slot, no access)
	lastErr   string

	// What tests observe, under mu.
	mu       sync.Mutex
	observed State
}

// NewAgent returns an agent in state created; zero fields of opts take their defaults.
func NewAgent(opts Options) *Agent {
	opts = opts.withDefaults()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		opts:     opts,
		log:      log.With("component", "steer", "port", opts.Port),
		pids:     map[uint64]int{},
		podUIDs:  map[uint64]types.UID{},
		retry:    map[uint64]time.Time{},
		excluded: map[uint64]bool{},
		warned:   map[uint64]bool{},
	}
	a.life.Name = "steering agent"
	return a
}

// Init implements component.Component.
func (a *Agent) Init(_ context.Context) error {
	return a.life.Init(a.init)
}

func (a *Agent) init() error {
	if err := a.opts.Validate(); err != nil {
		return fmt.Errorf("initializing the steering agent: %w", err)
	}
	pem, err := os.ReadFile(a.opts.CAFile)
	if err != nil {
		return fmt.Errorf("initializing the steering agent: reading the CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("initializing the steering agent: %s holds no PEM certificate", a.opts.CAFile)
	}
	a.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if ports, err := ephemeralProbePorts(a.opts.Proc, a.opts.ProbeBase); err != nil {
		a.log.Warn("cannot tell whether the probe ports are ephemeral ports", "err", err)
	} else if len(ports) > 0 {
		a.log.Warn(fmt.Sprintf("probe ports %v are ephemeral ports of this node: a local client that gets one as its source port is steered like a probe, to one listener or refused; choose a probe base outside net.ipv4.ip_local_port_range or add the ports to net.ipv4.ip_local_reserved_ports", ports))
	}
	if a.prog, err = Load(a.opts.ProbeBase); err != nil {
		return fmt.Errorf("initializing the steering agent (it needs CAP_BPF): %w", err)
	}
	return nil
}

// Start implements component.Component.
func (a *Agent) Start(ctx context.Context) error {
	return a.life.Start(func() error {
		ctx, a.cancel = context.WithCancel(ctx)
		a.lastRound.Store(time.Now().UnixNano())
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			a.loop(ctx)
		}()
		a.log.Info("steering agent started", "probePorts", fmt.Sprintf("%d…%d", a.opts.ProbeBase, int(a.opts.ProbeBase)+Slots-1), "interval", a.opts.Interval)
		return nil
	})
}

// Stop implements component.Component. The program stays attached to the listeners.
func (a *Agent) Stop() error {
	return a.life.Stop(func(from component.State) error {
		if from == component.Running {
			a.cancel()
			a.done.Wait()
		}
		if a.prog != nil {
			if err := a.prog.Close(); err != nil {
				return fmt.Errorf("stopping the steering agent: %w", err)
			}
			a.log.Info("steering agent stopped; the program stays attached with the last ready list")
		}
		return nil
	})
}

// Ready implements component.Readier: nil once the program is loaded and attached to
// the port's listeners at least once.
func (a *Agent) Ready() error {
	if a.attached.Load() {
		return nil
	}
	return fmt.Errorf("steering agent: no listener of port %d taken yet", a.opts.Port)
}

// Healthy implements component.Healther: an error once the loop has not run for 30 s.
func (a *Agent) Healthy() error {
	last := a.lastRound.Load()
	if last == 0 {
		return errors.New("steering agent: not started")
	}
	if since := time.Since(time.Unix(0, last)); since > stuckAfter {
		return fmt.Errorf("steering agent: no round for %s", since.Round(time.Second))
	}
	return nil
}

func (a *Agent) loop(ctx context.Context) {
	t := time.NewTicker(a.opts.Interval)
	defer t.Stop()
	for {
		a.round(ctx)
		a.lastRound.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fail logs err once until another error or a good round.
func (a *Agent) fail(err error) {
	if msg := err.Error(); msg != a.lastErr {
		a.lastErr = msg
		a.log.Error("steering round failed; retrying", "err", err)
	}
}

// round is one pass of the loop (see Agent).
func (a *Agent) round(ctx context.Context) {
	addrs, err := listening(a.opts.Proc, a.opts.Port)
	if err != nil {
		a.fail(err)
		return
	}
	for inode, addr := range addrs {
		if !a.steered(addr.Addr()) {
			delete(addrs, inode)
		}
	}
	a.lastErr = ""
	now := time.Now()
	for _, m := range []map[uint64]bool{a.excluded, a.warned} {
		for inode := range m {
			if _, ok := addrs[inode]; !ok {
				delete(m, inode)
			}
		}
	}
	for inode := range a.retry {
		if _, ok := addrs[inode]; !ok {
			delete(a.retry, inode)
		}
	}

	// 2. Probe.
	probes, why := a.probe(ctx, addrs)
	if ctx.Err() != nil {
		return // stopping: a cancelled probe says nothing about its server
	}

	// 3. Decide.
	var seen []uint64
	for inode := range addrs {
		_, slotted := a.state.Listeners[inode]
		if !slotted && (a.excluded[inode] || now.Before(a.retry[inode])) {
			continue
		}
		seen = append(seen, inode)
	}
	next, ch := Decide(a.state, seen, probes)

	// 4. Apply: the ready list first, so that no slot the kernel still counts ready
	// gets a new listener.
	if ch.ReadyChanged || !a.appliedOK {
		if err := a.prog.SetReady(ch.Ready); err != nil {
			a.appliedOK = false
			a.log.Error("writing the ready listeners failed; retrying", "slots", ch.Ready, "err", err)
		} else {
			a.applied, a.appliedOK = ch.Ready, true
		}
	}
	for _, f := range ch.Freed {
		if err := a.prog.SetSlot(f.Slot, -1); err != nil {
			a.log.Error("emptying a slot", "slot", f.Slot, "err", err)
		}
		a.log.Info(fmt.Sprintf("apiserver listener pid %d (slot %d) closed: new connections go to %s", a.pids[f.Inode], f.Slot, a.destination()), "inode", f.Inode)
		delete(a.pids, f.Inode)
		delete(a.podUIDs, f.Inode)
	}
	a.place(next, ch.Slotted, addrs, now)
	for _, inode := range ch.Unslotted {
		if !a.warned[inode] {
			a.warned[inode] = true
			a.log.Warn(fmt.Sprintf("a listener found no free slot (%d taken): the kernel's choice reaches it only while no listener is ready", Slots), "inode", inode)
		}
	}
	for _, r := range ch.BecameReady {
		a.log.Info(fmt.Sprintf("apiserver listener pid %d (slot %d) is ready: new connections go to %s", a.pids[r.Inode], r.Slot, a.destination()), "inode", r.Inode)
	}
	for _, r := range ch.BecameUnready {
		a.log.Info(fmt.Sprintf("apiserver listener pid %d (slot %d) is not ready: new connections go to %s", a.pids[r.Inode], r.Slot, a.destination()), "inode", r.Inode, "probe", why[r.Inode])
	}
	a.state = next
	a.mu.Lock()
	a.observed = next
	a.mu.Unlock()
	if a.opts.Gate != nil {
		a.opts.Gate.Observe(podVerdicts(next, a.podUIDs))
	}
}

// steered says whether a listener on addr is one the agent steers (Options.Address).
func (a *Agent) steered(addr netip.Addr) bool {
	if !a.opts.Address.IsValid() {
		return addr.IsUnspecified()
	}
	return addr.Unmap() == a.opts.Address.Unmap()
}

// GateUnreadyAfter is how many failed probes in a row make a pod not serving for the
// Gate: a sustained failure (2 s of 500s, 20 s of probe timeouts), not a busy moment.
// Steering drops a listener at its first failure (UnreadyAfter), but a pod's readiness
// decides its DaemonSet's roll-out: a DaemonSet that surges deletes an old pod at once
// when it is not Ready, even before its replacement is. In CI one probe that timed out
// on a loaded node flapped the old apiserver's gate, the controller deleted it, and
// clients met the starting replacement for 10 s.
const GateUnreadyAfter = 20

// podVerdicts are the verdicts of Options.Gate: a pod is serving if one of its
// listeners is ready, not serving if none is and one failed its last GateUnreadyAfter
// probes, and unknown (absent) otherwise.
func podVerdicts(s State, pods map[uint64]types.UID) map[types.UID]bool {
	v := map[types.UID]bool{}
	for inode, e := range s.Listeners {
		uid, ok := pods[inode]
		if !ok || uid == "" {
			continue
		}
		switch {
		case e.Ready:
			v[uid] = true
		case e.Failures >= GateUnreadyAfter:
			if !v[uid] {
				v[uid] = false
			}
		}
	}
	return v
}

// destination says where the kernel sends new connections now.
func (a *Agent) destination() string {
	switch {
	case !a.appliedOK:
		return "slots unknown (writing them failed)"
	case len(a.applied) == 0:
		return "any listener (the kernel's choice)"
	}
	return "slots " + fmt.Sprint(a.applied)
}

// probe probes every slotted listener that still listens, all at once.
func (a *Agent) probe(ctx context.Context, addrs map[uint64]netip.AddrPort) (map[uint64]bool, map[uint64]string) {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		probes = map[uint64]bool{}
		why    = map[uint64]string{}
	)
	for inode, e := range a.state.Listeners {
		addr, ok := addrs[inode]
		if !ok {
			continue
		}
		wg.Go(func() {
			err := ProbeReady(ctx, a.prog, e.Slot, probeAddr(addr), a.tls, a.opts.ProbeTimeout)
			mu.Lock()
			defer mu.Unlock()
			probes[inode] = err == nil
			if err != nil {
				why[inode] = err.Error()
			}
		})
	}
	wg.Wait()
	return probes, why
}

// probeAddr is where to probe a listener bound to addr: 127.0.0.1 for one on every
// address (a Go server's [::] socket takes IPv4 too).
func probeAddr(addr netip.AddrPort) string {
	ip := addr.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.AddrPortFrom(ip, addr.Port()).String()
}

// place puts the listeners Decide slotted into their slots; one it cannot take leaves
// next, to be tried again after retryAfter (or never, an MPTCP one).
func (a *Agent) place(next State, slotted []Assignment, addrs map[uint64]netip.AddrPort, now time.Time) {
	if len(slotted) == 0 {
		return
	}
	want := map[uint64]bool{}
	for _, s := range slotted {
		want[s.Inode] = true
	}
	found := holders(a.opts.Proc, want)
	drop := func(inode uint64, retry bool) {
		delete(next.Listeners, inode)
		if retry {
			a.retry[inode] = now.Add(retryAfter)
		}
	}
	warnOnce := func(inode uint64, msg string, args ...any) {
		if !a.warned[inode] {
			a.warned[inode] = true
			a.log.Warn(msg, append(args, "inode", inode)...)
		}
	}
	for _, s := range slotted {
		if !a.appliedOK || slices.Contains(a.applied, s.Slot) {
			drop(s.Inode, false) // the kernel may still count the slot ready
			continue
		}
		h, ok := found[s.Inode]
		if !ok {
			warnOnce(s.Inode, "no process found holding a listener: the agent needs the host's PID namespace and CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH for a server of another user); retrying")
			drop(s.Inode, true)
			continue
		}
		l := Listener{Inode: s.Inode, PID: h.pid, FD: h.fd, Addr: addrs[s.Inode]}
		err := a.take(l, s.Slot)
		switch {
		case errors.Is(err, ErrMultipath):
			a.excluded[s.Inode] = true
			a.log.Warn(fmt.Sprintf("apiserver listener pid %d is an MPTCP socket, which cannot be steered: the server must listen on plain TCP (GODEBUG=multipathtcp=0 for a Go server such as kube-apiserver); the kernel's choice reaches it only while no listener is ready", h.pid), "inode", s.Inode)
			drop(s.Inode, false)
		case errors.Is(err, unix.EBUSY):
			// In another program's map: a previous agent's, which the attach just
			// replaced and the kernel frees in a moment. Try again next round.
			warnOnce(s.Inode, fmt.Sprintf("apiserver listener pid %d is still in a previous steering program's map; retrying", h.pid), "err", err)
			drop(s.Inode, false)
		case err != nil:
			warnOnce(s.Inode, fmt.Sprintf("taking apiserver listener pid %d failed; retrying", h.pid), "err", err)
			drop(s.Inode, true)
		default:
			a.pids[s.Inode] = h.pid
			uid := types.UID(PodUID(a.opts.Proc, h.pid))
			a.podUIDs[s.Inode] = uid
			delete(a.warned, s.Inode)
			a.log.Info(fmt.Sprintf("apiserver listener pid %d found: slot %d, not ready until %d probes pass", h.pid, s.Slot, ReadyAfter), "inode", s.Inode, "addr", l.Addr.String(), "fd", h.fd, "pod", uid)
		}
	}
}

// take attaches the program through l and puts l in slot. Attaching first replaces the
// program of a previous agent, whose map then lets the socket go (a socket can be in
// one such map only; until that happens SetSlot fails and the agent retries).
func (a *Agent) take(l Listener, slot int) error {
	fd, err := Duplicate(l)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err == nil && proto == unix.IPPROTO_MPTCP {
		return fmt.Errorf("socket %d: %w", l.Inode, ErrMultipath)
	}
	if err := a.prog.Attach(fd); err != nil {
		return err
	}
	a.attached.Store(true)
	return a.prog.SetSlot(slot, fd)
}

// snapshot returns the state of the last round.
func (a *Agent) snapshot() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.observed
}
