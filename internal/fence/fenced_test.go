package fence

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// fakeFence logs what Fenced does with it, in order; the listener goes after listening
// calls to Listening (never if negative).
type fakeFence struct {
	holdErr, listenErr error
	listening          int
	log                *[]string
}

func (f *fakeFence) Hold(addr netip.AddrPort) (func() error, error) {
	if f.holdErr != nil {
		*f.log = append(*f.log, "hold failed")
		return nil, f.holdErr
	}
	*f.log = append(*f.log, "hold "+addr.String())
	return func() error { *f.log = append(*f.log, "release"); return nil }, nil
}

func (f *fakeFence) Listening(netip.AddrPort) (bool, error) {
	*f.log = append(*f.log, "listening?")
	if f.listenErr != nil {
		return false, f.listenErr
	}
	if f.listening == 0 {
		return false, nil
	}
	f.listening--
	return true, nil
}

// TestFenced: new connections are held before the server stops and released only once
// its listener is gone (or after Timeout, or on an error); without a fence the server is
// stopped all the same.
func TestFenced(t *testing.T) {
	addr := netip.MustParseAddrPort("172.31.0.31:6443")
	errStop, errFence, errProc := errors.New("stop failed"), errors.New("no CAP_NET_ADMIN"), errors.New("no /proc/net/tcp")
	tests := []struct {
		name      string
		fence     fakeFence
		stopErr   error
		wantLog   []string
		wantErr   error
		wantSlept time.Duration
	}{{
		name:      "held, stopped, released once the listener is gone",
		fence:     fakeFence{listening: 2},
		wantLog:   []string{"hold 172.31.0.31:6443", "stop", "listening?", "listening?", "listening?", "release"},
		wantSlept: Settle + 2*50*time.Millisecond,
	}, {
		name:      "the listener goes with stop",
		fence:     fakeFence{},
		wantLog:   []string{"hold 172.31.0.31:6443", "stop", "listening?", "release"},
		wantSlept: Settle,
	}, {
		name:    "no fence: stopped all the same",
		fence:   fakeFence{holdErr: errFence},
		wantLog: []string{"hold failed", "stop"},
	}, {
		name:    "no fence and stop fails",
		fence:   fakeFence{holdErr: errFence},
		stopErr: errStop,
		wantLog: []string{"hold failed", "stop"},
		wantErr: errStop,
	}, {
		name:      "stop fails: released at once",
		fence:     fakeFence{listening: -1},
		stopErr:   errStop,
		wantLog:   []string{"hold 172.31.0.31:6443", "stop", "release"},
		wantErr:   errStop,
		wantSlept: Settle,
	}, {
		name:      "the listener cannot be checked: released",
		fence:     fakeFence{listenErr: errProc},
		wantLog:   []string{"hold 172.31.0.31:6443", "stop", "listening?", "release"},
		wantErr:   errProc,
		wantSlept: Settle,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			f := tt.fence
			f.log = &log
			var slept time.Duration
			err := Fenced(&f, addr, func(d time.Duration) { slept += d }, slog.New(slog.DiscardHandler), func() error {
				log = append(log, "stop")
				return tt.stopErr
			})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(log, tt.wantLog) {
				t.Errorf("steps %q, want %q", log, tt.wantLog)
			}
			if slept != tt.wantSlept {
				t.Errorf("slept %s, want %s", slept, tt.wantSlept)
			}
		})
	}

	t.Run("the listener never goes: released after Timeout", func(t *testing.T) {
		var log []string
		f := &fakeFence{listening: -1, log: &log}
		var slept time.Duration
		if err := Fenced(f, addr, func(d time.Duration) { slept += d }, slog.New(slog.DiscardHandler), func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if log[len(log)-1] != "release" {
			t.Errorf("last step %q, want release", log[len(log)-1])
		}
		if slept < Settle+Timeout || slept > Settle+Timeout+time.Second {
			t.Errorf("slept %s, want about %s", slept, Settle+Timeout)
		}
	})
}
