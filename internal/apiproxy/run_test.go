package apiproxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The proxy's lifecycle: Init reads the backends (here only the state file) and listens,
// Start forwards, Stop closes the listener; a second Stop is a no-op.
func TestProxyLifecycle(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if err := New(Options{Listen: freeAddr(t)}, log).Init(context.Background()); err == nil || !strings.Contains(err.Error(), "--backend") {
		t.Errorf("Init without any backend = %v, want an error naming --backend", err)
	}

	backend, stop := echoServer(t, "a")
	defer stop()
	state := filepath.Join(t.TempDir(), "backends.json")
	data, _ := json.Marshal([]string{backend})
	if err := os.WriteFile(state, data, 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	p := New(Options{Listen: listen, StateFile: state, ProbeInterval: time.Hour, DiscoverInterval: time.Hour}, log)
	ctx := context.Background()
	if err := p.Start(ctx); err == nil {
		t.Error("Start before Init succeeded")
	}
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(t, listen); err != nil || got != "a\n" {
		t.Errorf("through the proxy: %q, %v; want the backend from the state file", got, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Error("the proxy still listens after Stop")
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A listener that fails while running is reported through Failed.
func TestProxyFailed(t *testing.T) {
	p := New(Options{Listen: freeAddr(t), Backends: []string{"127.0.0.1:1"}, ProbeInterval: time.Hour}, nil)
	ctx := context.Background()
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	select {
	case err := <-p.Failed():
		t.Fatalf("failed before anything went wrong: %v", err)
	default:
	}
	p.ln.Close()
	select {
	case err := <-p.Failed():
		if err == nil {
			t.Error("Failed delivered nil")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a closed listener was not reported")
	}
}
