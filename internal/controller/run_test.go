package controller

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/selfkube/selfkube/internal/component"
)

func lease(t *testing.T, client *fake.Clientset) *coordinationv1.Lease {
	t.Helper()
	l, err := client.CoordinationV1().Leases(metav1.NamespaceSystem).Get(context.Background(), Name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return l
}

// Under component.Run the controller takes the lease with its identity and, when ctx
// ends, releases it, so another replica leads at once.
func TestControllerLeadsAndReleases(t *testing.T) {
	client := fake.NewClientset()
	events := &component.Events{Client: client, Source: corev1.EventSource{Component: Name}}
	c := New(client, events, "replica-1", metav1.NamespaceSystem, slog.New(slog.DiscardHandler))
	if err := c.Init(context.Background()); err == nil {
		t.Error("Init before its Events succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- component.Run(ctx, component.Options{}, events, c) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l := lease(t, client); l != nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "replica-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the controller never took the lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil (ctx ended, no lease lost)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if l := lease(t, client); l == nil || l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "replica-1" {
		t.Errorf("lease after Stop = %+v, want released", l)
	}
}

// Components: Events, then the controller with its identity (--identity, else
// $POD_NAME), and /healthz on --health-bind-address.
func TestComponents(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "selfkube-controller-abc")
	opts := DefaultOptions()
	opts.Kubeconfig = kc
	for flag, want := range map[string]string{"": "selfkube-controller-abc", "by-flag": "by-flag"} {
		opts.Identity = flag
		run, cs, err := Components(opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if run.Address != opts.HealthBindAddress {
			t.Errorf("health address %q, want %q", run.Address, opts.HealthBindAddress)
		}
		if len(cs) != 2 {
			t.Fatalf("%d components, want Events and the controller", len(cs))
		}
		if _, ok := cs[0].(*component.Events); !ok {
			t.Errorf("first component %T, want *component.Events", cs[0])
		}
		if c, ok := cs[1].(*Controller); !ok || c.id != want {
			t.Errorf("identity with --identity=%q: %#v, want %q", flag, cs[1], want)
		}
	}
	opts.Kubeconfig = filepath.Join(t.TempDir(), "missing")
	if _, _, err := Components(opts, nil); err == nil {
		t.Error("Components with a missing kubeconfig succeeded")
	}
}
