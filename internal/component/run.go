package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options are how Run serves the components of one agent.
type Options struct {
	// Address (host:port) serves /healthz, /readyz and, with Metrics, /metrics over plain
	// HTTP; empty serves nothing.
	Address string
	// Metrics serves /metrics (the Prometheus text format); nil: no /metrics.
	Metrics http.Handler
	// Log receives what Run cannot return (a second error while stopping).
	Log *slog.Logger
	// SharePort listens with SO_REUSEPORT, for an agent of which two replicas may run on
	// one host network (a Deployment on a one-node cluster), as the control-plane
	// components do with --permit-port-sharing.
	SharePort bool
}

// Run runs the components of one agent until ctx ends, SIGTERM or SIGINT arrives, or a
// Failer fails:
//
//  1. it listens on Options.Address;
//  2. it calls Init of every component, in order, then Start of every component, in order;
//  3. it waits;
//  4. it calls Stop of every component, in reverse order, whatever state each reached
//     (Stop of a component never initialized releases what its constructor opened);
//  5. it closes the listener.
//
// A failure in steps 1 and 2 skips to step 4. Run returns the first error: of the
// listener, Init, Start or a Failer, else of a Stop; an end by ctx or a signal is no
// error.
//
// While every component runs, /healthz answers 200 unless a Healther is not healthy, and
// /readyz answers 200 when every Readier is ready; both answer 503 otherwise, with the
// reasons, and both answer 503 before Start completes and once Stop begins.
func Run(ctx context.Context, opts Options, components ...Component) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()

	s := &server{components: components}
	err := s.run(ctx, opts)
	s.running.Store(false)
	for i := len(components) - 1; i >= 0; i-- {
		if serr := components[i].Stop(); serr != nil {
			if err == nil {
				err = serr
			} else {
				log.Error("stopping a component", "err", serr)
			}
		}
	}
	s.close()
	return err
}

// server is one run: its listener and whether every component runs.
type server struct {
	components []Component
	running    atomic.Bool
	http       *http.Server
}

func (s *server) run(ctx context.Context, opts Options) error {
	if opts.Address != "" {
		if err := s.listen(opts.Address, opts.Metrics, opts.SharePort); err != nil {
			return err
		}
	}
	for _, c := range s.components {
		if err := c.Init(ctx); err != nil {
			return err
		}
	}
	for _, c := range s.components {
		if err := c.Start(ctx); err != nil {
			return err
		}
	}
	s.running.Store(true)

	failed := make(chan error, len(s.components))
	done := make(chan struct{})
	defer close(done)
	for _, c := range s.components {
		if f, ok := c.(Failer); ok {
			go func(ch <-chan error) {
				select {
				case err := <-ch:
					failed <- err
				case <-done:
				}
			}(f.Failed())
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-failed:
		return err
	}
}

func (s *server) listen(addr string, metrics http.Handler, share bool) error {
	var lc net.ListenConfig
	if share {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("serving /healthz on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { s.answer(w, s.unhealthy()) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { s.answer(w, s.unready()) })
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return nil
}

func (s *server) close() {
	if s.http != nil {
		_ = s.http.Close()
	}
}

var errNotRunning = errors.New("not running")

func (s *server) unhealthy() error {
	if !s.running.Load() {
		return errNotRunning
	}
	var errs []error
	for _, c := range s.components {
		if h, ok := c.(Healther); ok {
			errs = append(errs, h.Healthy())
		}
	}
	return errors.Join(errs...)
}

func (s *server) unready() error {
	if !s.running.Load() {
		return errNotRunning
	}
	var errs []error
	for _, c := range s.components {
		if r, ok := c.(Readier); ok {
			errs = append(errs, r.Ready())
		}
	}
	return errors.Join(errs...)
}

func (s *server) answer(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok")
}
