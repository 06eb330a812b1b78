package network

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// fakeCluster is a fake clientset whose watchStarted is closed once the agent's Node
// watch is established, so later changes cannot fall between list and watch.
func fakeCluster(t *testing.T, nodes ...*corev1.Node) (*fake.Clientset, chan struct{}) {
	t.Helper()
	var objs []runtime.Object
	for _, n := range nodes {
		objs = append(objs, n)
	}
	client := fake.NewClientset(objs...)
	started := make(chan struct{})
	client.PrependWatchReactor("nodes", func(action clienttesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace())
		select {
		case <-started:
		default:
			close(started)
		}
		return true, w, err
	})
	return client, started
}

// eventually waits for cond; the deadline only bounds a broken test, it asserts nothing
// about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func sameRoutes(f *fakeRoutes, want ...Route) func() bool {
	return func() bool { return cmp.Equal(want, f.snapshot(), cmpRoutes, cmpopts.EquateEmpty()) }
}

func TestAgent(t *testing.T) {
	ctx := context.Background()
	self := node("a", nil, "InternalIP=172.31.0.2")
	peerB := node("b", []string{"10.244.1.0/24"}, "InternalIP=172.31.0.3")
	client, watching := fakeCluster(t, self, peerB)
	routes := newFakeRoutes(route("10.244.9.0/24", "172.31.0.99")) // owned, of a node long gone
	masq := &fakeMasquerade{}
	dir := t.TempDir()
	conflist := filepath.Join(dir, DefaultConflistName)

	agent := New(Config{
		NodeName:     "a",
		Client:       client,
		ConflistPath: conflist,
		ResyncPeriod: 20 * time.Millisecond,
		Routes:       routes,
		Masquerade:   masq,
		Log:          slog.New(slog.DiscardHandler),
	})
	if err := agent.Start(ctx); err == nil {
		t.Fatalf("Start before Init succeeded")
	}
	if err := agent.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := agent.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = agent.Stop() })
	<-watching

	// Before the node has a pod CIDR: routes to peers, no conflist, not Ready.
	eventually(t, "route to b and the stale route gone", sameRoutes(routes, route("10.244.1.0/24", "172.31.0.3")))
	if _, err := os.Stat(conflist); !os.IsNotExist(err) {
		t.Fatalf("conflist exists before the pod CIDR is set: %v", err)
	}
	if err := agent.Ready(); err == nil || !strings.Contains(err.Error(), "waiting for spec.podCIDRs of node a") {
		t.Fatalf("Ready() = %v before the pod CIDR", err)
	}
	if _, err := masq.current(); err == nil {
		t.Fatalf("masquerade rules installed without a pod CIDR")
	}

	// kube-controller-manager allocates the pod CIDR: conflist written, Ready.
	withCIDR := self.DeepCopy()
	withCIDR.Spec.PodCIDR, withCIDR.Spec.PodCIDRs = "10.244.0.0/24", []string{"10.244.0.0/24"}
	if _, err := client.CoreV1().Nodes().Update(ctx, withCIDR, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready", func() bool { return agent.Ready() == nil })
	want, _ := DesiredConflist([]string{"10.244.0.0/24"})
	if got, err := os.ReadFile(conflist); err != nil || string(got) != string(want) {
		t.Fatalf("conflist = %q, %v; want\n%s", got, err, want)
	}
	assertOnlyFiles(t, dir, DefaultConflistName)
	eventually(t, "masquerade rules", func() bool {
		r, err := masq.current()
		return err == nil && r.Equal(MasqueradeRules{Sources: prefixes("10.244.0.0/24"), Exempt: prefixes("10.244.0.0/24", "10.244.1.0/24")})
	})

	// Unrelated node changes and resyncs leave the conflist file alone.
	written, _ := os.Stat(conflist)
	labelled := withCIDR.DeepCopy()
	labelled.Labels = map[string]string{"x": "y"}
	if _, err := client.CoreV1().Nodes().Update(ctx, labelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	masq.mu.Lock()
	calls := masq.calls
	masq.mu.Unlock()
	eventually(t, "two more syncs", func() bool { masq.mu.Lock(); defer masq.mu.Unlock(); return masq.calls >= calls+2 })
	if now, _ := os.Stat(conflist); !os.SameFile(written, now) {
		t.Errorf("conflist rewritten though unchanged")
	}

	// A node joins; another leaves.
	peerC := node("c", []string{"10.244.2.0/24"}, "InternalIP=172.31.0.4")
	if _, err := client.CoreV1().Nodes().Create(ctx, peerC, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route to c", sameRoutes(routes, route("10.244.1.0/24", "172.31.0.3"), route("10.244.2.0/24", "172.31.0.4")))
	if err := client.CoreV1().Nodes().Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route to b removed", sameRoutes(routes, route("10.244.2.0/24", "172.31.0.4")))

	// A node changes address: the route's gateway follows.
	moved := peerC.DeepCopy()
	moved.Status.Addresses[0].Address = "172.31.0.40"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route to c via its new address", sameRoutes(routes, route("10.244.2.0/24", "172.31.0.40")))

	// Someone deletes our route behind our back: the periodic resync puts it back.
	_ = routes.Delete(route("10.244.2.0/24", "172.31.0.40"))
	eventually(t, "route restored by resync", sameRoutes(routes, route("10.244.2.0/24", "172.31.0.40")))

	// The kernel fails for a while: the agent retries and recovers.
	routes.setFail(errors.New("netlink: operation not permitted"))
	peerD := node("d", []string{"10.244.3.0/24"}, "InternalIP=172.31.0.5")
	if _, err := client.CoreV1().Nodes().Create(ctx, peerD, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	routes.setFail(nil)
	eventually(t, "route to d after the failure", sameRoutes(routes, route("10.244.2.0/24", "172.31.0.40"), route("10.244.3.0/24", "172.31.0.5")))

	// Stop leaves everything in place; a second Stop is a no-op; no restart.
	if err := agent.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := agent.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if got, err := os.ReadFile(conflist); err != nil || string(got) != string(want) {
		t.Errorf("conflist after Stop = %q, %v", got, err)
	}
	if got := routes.snapshot(); len(got) != 2 {
		t.Errorf("routes after Stop = %v, want both kept", got)
	}
	if err := agent.Start(ctx); err == nil {
		t.Errorf("Start after Stop succeeded")
	}
}

// A pod CIDR that someone else already routes is not taken over; the other routes are
// still set.
func TestAgentLeavesForeignRoutes(t *testing.T) {
	ctx := context.Background()
	client, _ := fakeCluster(t,
		node("a", []string{"10.244.0.0/24"}, "InternalIP=172.31.0.2"),
		node("b", []string{"10.244.1.0/24"}, "InternalIP=172.31.0.3"),
		node("c", []string{"10.244.2.0/24"}, "InternalIP=172.31.0.4"),
	)
	routes := newFakeRoutes()
	routes.foreign["10.244.1.0/24"] = route("10.244.1.0/24", "192.0.2.1")
	agent := New(Config{NodeName: "a", Client: client, ConflistPath: filepath.Join(t.TempDir(), "x.conflist"),
		ResyncPeriod: time.Hour, Routes: routes})
	if err := agent.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop()
	eventually(t, "route to c", sameRoutes(routes, route("10.244.2.0/24", "172.31.0.4")))
	eventually(t, "Ready", func() bool { return agent.Ready() == nil })
	if got := routes.foreign["10.244.1.0/24"]; got != route("10.244.1.0/24", "192.0.2.1") {
		t.Errorf("foreign route changed to %v", got)
	}
}

// Cancelling the context given to Start (SIGTERM) ends the loop; Stop then returns.
func TestAgentContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client, watching := fakeCluster(t, node("a", []string{"10.244.0.0/24"}))
	agent := New(Config{NodeName: "a", Client: client, ConflistPath: filepath.Join(t.TempDir(), "x.conflist"),
		ResyncPeriod: time.Hour, Routes: newFakeRoutes()})
	if err := agent.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-watching
	eventually(t, "Ready", func() bool { return agent.Ready() == nil })
	cancel()
	if err := agent.Stop(); err != nil {
		t.Fatalf("Stop after cancel: %v", err)
	}
}

func TestAgentInitErrors(t *testing.T) {
	client := fake.NewClientset()
	dir := t.TempDir()
	good := Config{NodeName: "a", Client: client, ConflistPath: filepath.Join(dir, "x.conflist"), ResyncPeriod: time.Second, Routes: newFakeRoutes()}
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"no node name", func(c *Config) { c.NodeName = "" }, "set NODE_NAME"},
		{"no client", func(c *Config) { c.Client = nil }, "no Kubernetes client"},
		{"no routes", func(c *Config) { c.Routes = nil }, "no route table"},
		{"zero resync", func(c *Config) { c.ResyncPeriod = 0 }, "must be positive"},
		{"no conflist path", func(c *Config) { c.ConflistPath = "" }, "no conflist path"},
		{"conf dir missing", func(c *Config) { c.ConflistPath = filepath.Join(dir, "missing", "x.conflist") }, "mount the host's /etc/cni/net.d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			err := New(cfg).Init(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Init error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	a := New(good)
	if err := a.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Init(context.Background()); err == nil {
		t.Errorf("second Init succeeded")
	}
	if err := a.Stop(); err != nil {
		t.Errorf("Stop after Init: %v", err)
	}
}

func TestParseClusterCIDRs(t *testing.T) {
	got, err := parseClusterCIDRs([]string{"10.244.0.0/16", "fd00::5/48"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00::/48")}, got, cmpPrefix); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseClusterCIDRs([]string{"10.244.0.0"}); err == nil || !strings.Contains(err.Error(), "--cluster-cidr") {
		t.Errorf("bad CIDR: %v", err)
	}
}

// Components fails before touching the host when it cannot build its client, parse a
// flag or learn the node name.
func TestComponentsErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	opts := DefaultOptions()
	opts.NodeName = "a"
	opts.Kubeconfig = filepath.Join(t.TempDir(), "missing.conf")
	if _, _, err := Components(opts, log); err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing kubeconfig: %v", err)
	}
	opts.ClusterCIDRs = []string{"nonsense"}
	if _, _, err := Components(opts, log); err == nil || !strings.Contains(err.Error(), "--cluster-cidr") {
		t.Errorf("bad --cluster-cidr: %v", err)
	}
	t.Setenv("NODE_NAME", "")
	opts.NodeName = ""
	if _, _, err := Components(opts, log); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("no node name: %v", err)
	}
}
