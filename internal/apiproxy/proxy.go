// Package apiproxy is the node-local API load balancer: a TCP proxy on the node's loopback
// address that the kubelet (and anything else on the node) uses to reach the apiservers.
// It forwards each connection to an apiserver that answered /readyz lately, so a node
// keeps its API when a control-plane node dies, with no load balancer outside the
// cluster. TLS passes through: clients verify the apiservers themselves (their
// certificate holds 127.0.0.1).
//
// Its backends are the addresses it was started with, the ones it last knew (a state
// file, so a reboot does not forget the control-plane nodes that joined later), and the
// endpoints of the kubernetes Service, which it reads through itself.
package apiproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"
)

// ForgetAfter is how long an apiserver must have been neither healthy nor among the
// endpoints before it is dropped: the endpoints list only the apiservers up now, and a
// control-plane node that is down for a while must not be forgotten (it comes back).
const ForgetAfter = 10 * time.Minute

type backend struct {
	healthy bool
	seen    time.Time // last healthy, or last among the endpoints
}

// Backends keeps the apiserver addresses and which of them are healthy.
type Backends struct {
	mu      sync.Mutex
	all     map[string]*backend
	next    int
	changed func([]string)
	now     func() time.Time
}

// NewBackends starts with addrs, all presumed healthy until probed.
func NewBackends(addrs []string, changed func([]string)) *Backends {
	b := &Backends{all: map[string]*backend{}, changed: changed, now: time.Now}
	for _, a := range addrs {
		b.all[a] = &backend{healthy: true, seen: b.now()}
	}
	return b
}

// Set merges the addresses the endpoints list now: new ones are added (healthy until
// probed), and a known one is dropped only when it has been neither healthy nor listed
// for ForgetAfter.
func (b *Backends) Set(addrs []string) {
	b.mu.Lock()
	now := b.now()
	changed := false
	listed := map[string]bool{}
	for _, a := range addrs {
		listed[a] = true
		if be, ok := b.all[a]; ok {
			be.seen = now
			continue
		}
		b.all[a] = &backend{healthy: true, seen: now}
		changed = true
	}
	for a, be := range b.all {
		if !listed[a] && !be.healthy && now.Sub(be.seen) >= ForgetAfter && len(b.all) > 1 {
			delete(b.all, a)
			changed = true
		}
	}
	list := b.listLocked()
	b.mu.Unlock()
	if changed && b.changed != nil {
		b.changed(list)
	}
}

// SetHealth records a probe of addr.
func (b *Backends) SetHealth(addr string, healthy bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if be, ok := b.all[addr]; ok {
		be.healthy = healthy
		if healthy {
			be.seen = b.now()
		}
	}
}

// List returns every address, sorted.
func (b *Backends) List() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.listLocked()
}

func (b *Backends) listLocked() []string {
	out := make([]string, 0, len(b.all))
	for a := range b.all {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Order returns the addresses to try for a new connection: the healthy ones, rotating,
// then the others (a probe may be stale; trying one is better than refusing).
func (b *Backends) Order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var healthy, sick []string
	for _, a := range b.listLocked() {
		if b.all[a].healthy {
			healthy = append(healthy, a)
		} else {
			sick = append(sick, a)
		}
	}
	if n := len(healthy); n > 0 {
		b.next = (b.next + 1) % n
		healthy = append(healthy[b.next:], healthy[:b.next]...)
	}
	return append(healthy, sick...)
}

// Serve accepts connections on ln and forwards each one to the first backend of Order
// that accepts it within dialTimeout, until ctx ends.
func Serve(ctx context.Context, ln net.Listener, b *Backends, dialTimeout time.Duration, log *slog.Logger) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go forward(c, b, dialTimeout, log)
	}
}

func forward(c net.Conn, b *Backends, dialTimeout time.Duration, log *slog.Logger) {
	defer c.Close()
	var up net.Conn
	for _, a := range b.Order() {
		var err error
		if up, err = net.DialTimeout("tcp", a, dialTimeout); err == nil {
			break
		}
		b.SetHealth(a, false)
		log.Debug("backend refused a connection", "backend", a, "err", err)
	}
	if up == nil {
		log.Warn("no apiserver accepts connections", "backends", b.List())
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
