package apiproxy

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"
)

// echoServer answers each line with its name; stop closes it.
func echoServer(t *testing.T, name string) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					fmt.Fprintln(c, name)
				}
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close() }
}

func ask(t *testing.T, addr string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintln(c, "who")
	return bufio.NewReader(c).ReadString('\n')
}

// TestProxyFailsOver forwards to both healthy backends, and only to the survivor once
// one is gone: the connection to the dead one is tried, marked unhealthy, and the next
// one serves, so no client connection fails.
func TestProxyFailsOver(t *testing.T) {
	a, stopA := echoServer(t, "a")
	b, stopB := echoServer(t, "b")
	defer stopB()
	backends := NewBackends([]string{a, b}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = Serve(ctx, ln, backends, time.Second, slog.New(slog.DiscardHandler)) }()

	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		got, err := ask(t, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		seen[got] = true
	}
	if !seen["a\n"] || !seen["b\n"] {
		t.Errorf("connections went to %v, want both backends", seen)
	}

	stopA()
	for i := 0; i < 4; i++ {
		got, err := ask(t, ln.Addr().String())
		if err != nil || got != "b\n" {
			t.Fatalf("with backend a gone: %q, %v; want b", got, err)
		}
	}
}

func TestBackendsSet(t *testing.T) {
	now := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	var saved []string
	b := NewBackends([]string{"10.0.0.1:6443"}, func(l []string) { saved = l })
	b.now = func() time.Time { return now }
	b.SetHealth("10.0.0.1:6443", false)
	b.Set(nil)
	if got := b.List(); len(got) != 1 {
		t.Errorf("an empty discovery replaced the known backends: %v", got)
	}
	b.Set([]string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"})
	if fmt.Sprint(saved) != "[10.0.0.1:6443 10.0.0.2:6443 10.0.0.3:6443]" {
		t.Errorf("new backends were not saved: %v", saved)
	}
	if order := b.Order(); order[len(order)-1] != "10.0.0.1:6443" {
		t.Errorf("order %v: healthy backends must come before an unhealthy one", order)
	}

	// The endpoints shrink to the apiservers up now: the others are kept...
	b.SetHealth("10.0.0.3:6443", false)
	now = now.Add(time.Minute)
	b.Set([]string{"10.0.0.2:6443"})
	if got := b.List(); len(got) != 3 {
		t.Errorf("a backend that is down for a minute was forgotten: %v", got)
	}
	// ...until they have been gone for ForgetAfter.
	now = now.Add(ForgetAfter)
	b.SetHealth("10.0.0.2:6443", true)
	b.Set([]string{"10.0.0.2:6443"})
	if got := fmt.Sprint(b.List()); got != "[10.0.0.2:6443]" {
		t.Errorf("after %s: backends %s, want only the listed one", ForgetAfter, got)
	}
	if fmt.Sprint(saved) != "[10.0.0.2:6443]" {
		t.Errorf("the pruned list was not saved: %v", saved)
	}
}
