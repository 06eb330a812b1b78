package node

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const what = "waiting for the thing"

func TestPollSucceeds(t *testing.T) {
	var calls atomic.Int32
	err := Poll(context.Background(), time.Millisecond, 10*time.Second, what, func(context.Context) (bool, error) {
		// Not done, then a retriable error, then done.
		switch calls.Add(1) {
		case 1:
			return false, nil
		case 2:
			return false, errors.New("transient")
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("Poll = %v, want nil", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("check ran %d times, want 3", n)
	}
}

func TestPollFirstCallImmediate(t *testing.T) {
	start := time.Now()
	err := Poll(context.Background(), 20*time.Second, 40*time.Second, what, func(context.Context) (bool, error) { return true, nil })
	if err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Poll = %v after %s, want nil at once", err, time.Since(start))
	}
}

func TestPollTimeoutNamesWhatAndLastError(t *testing.T) {
	first, lastErr := errors.New("first failure"), errors.New("connection refused")
	var calls atomic.Int32
	err := Poll(context.Background(), time.Millisecond, 50*time.Millisecond, what, func(context.Context) (bool, error) {
		if calls.Add(1) == 1 {
			return false, first
		}
		return false, lastErr
	})
	if err == nil {
		t.Fatal("Poll = nil, want a timeout")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, what+": ") || !strings.Contains(msg, "gave up after 50ms") || !strings.Contains(msg, "connection refused") {
		t.Errorf("Poll = %q, want what, the timeout and the last error", msg)
	}
	if strings.Contains(msg, "first failure") {
		t.Errorf("Poll = %q names an earlier error, not the last one", msg)
	}
	if !errors.Is(err, lastErr) {
		t.Errorf("Poll = %v does not wrap the last error", err)
	}
}

func TestPollTimeoutWithoutError(t *testing.T) {
	err := Poll(context.Background(), time.Millisecond, 20*time.Millisecond, what, func(context.Context) (bool, error) { return false, nil })
	if err == nil || err.Error() != what+": gave up after 20ms" {
		t.Errorf("Poll = %v, want %q", err, what+": gave up after 20ms")
	}
}

// A check whose request the poll's own deadline cuts returns that deadline's error; the
// error before it says more and is the one reported.
func TestPollKeepsTheErrorBeforeTheDeadline(t *testing.T) {
	real := errors.New("node n1 is registered but not Ready")
	var calls atomic.Int32
	err := Poll(context.Background(), time.Millisecond, 100*time.Millisecond, what, func(ctx context.Context) (bool, error) {
		if calls.Add(1) == 1 {
			return false, real
		}
		<-ctx.Done()
		return false, ctx.Err()
	})
	if !errors.Is(err, real) {
		t.Errorf("Poll = %v, want the error before the deadline", err)
	}
}

func TestPollStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lastErr := errors.New("not yet")
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- Poll(ctx, time.Millisecond, time.Minute, what, func(context.Context) (bool, error) {
			if calls.Add(1) == 3 {
				cancel()
			}
			return false, lastErr
		})
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Poll did not return after its context was cancelled")
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, lastErr) || !strings.HasPrefix(err.Error(), what+": ") {
		t.Errorf("Poll = %v, want what, context.Canceled and the last error", err)
	}
	if n := calls.Load(); n > 4 {
		t.Errorf("check ran %d times after the cancel, want it stopped", n)
	}
}

func TestPollTerminalErrorEndsAtOnce(t *testing.T) {
	fatal := errors.New("no kubeconfig")
	var calls atomic.Int32
	start := time.Now()
	err := Poll(context.Background(), time.Millisecond, 5*time.Second, what, func(context.Context) (bool, error) {
		if calls.Add(1) < 3 {
			return false, errors.New("transient")
		}
		return false, Terminal(fatal)
	})
	if !errors.Is(err, fatal) || err.Error() != what+": no kubeconfig" {
		t.Errorf("Poll = %v, want %q wrapping the terminal error", err, what+": no kubeconfig")
	}
	if n := calls.Load(); n != 3 || time.Since(start) > 4*time.Second {
		t.Errorf("check ran %d times in %s, want 3 and an immediate return", n, time.Since(start))
	}
	var te *terminalError
	if errors.As(err, &te) {
		t.Error("Poll's error is still marked terminal: an outer Poll would stop on it")
	}
}

func TestTerminal(t *testing.T) {
	if Terminal(nil) != nil {
		t.Error("Terminal(nil) != nil")
	}
	base := errors.New("x")
	if err := Terminal(base); !errors.Is(err, base) || err.Error() != "x" {
		t.Errorf("Terminal(x) = %v, want x wrapped", err)
	}
}
