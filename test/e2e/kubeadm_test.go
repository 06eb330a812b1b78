//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// testNodes are the machines of the three-node suites: a control plane and two workers.
var testNodes = []struct{ name, ip string }{
	{"node1", "172.31.0.11"},
	{"node2", "172.31.0.12"},
	{"node3", "172.31.0.13"},
}

// TestKubeadm is the baseline: a stock kubeadm cluster (static-pod control plane) on three
// real nodes, its networking, and its recovery from worker and control-plane reboots. The
// selfkube suites must pass the same checks.
func TestKubeadm(t *testing.T) {
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()

	var nodes []*framework.Node
	var names []string
	for _, tn := range testNodes {
		n, err := h.Up(ctx, tn.name, tn.ip)
		if err != nil {
			t.Fatalf("booting node %s: %v", tn.name, err)
		}
		nodes, names = append(nodes, n), append(names, tn.name)
	}
	cp, workers := nodes[0], nodes[1:]

	c, _, err := h.KubeadmInit(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if _, err := c.Join(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}

	step(t, "NodesReady", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "all nodes Ready", func(ctx context.Context) error {
			return framework.NodesReady(ctx, cs, names...)
		})
	})
	step(t, "KubeSystemReady", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "kube-system pods Ready", func(ctx context.Context) error {
			// apiserver, controller-manager, scheduler, etcd, 2 CoreDNS, a kube-proxy per node
			return framework.KubeSystemReady(ctx, cs, 6+len(nodes))
		})
	})
	step(t, "Workload", func(t *testing.T) {
		_, err := cs.AppsV1().DaemonSets(metav1.NamespaceDefault).Create(ctx, webDaemonSet(), metav1.CreateOptions{})
		if err := ensureCreated(err); err != nil {
			t.Fatalf("creating DaemonSet: %v", err)
		}
		_, err = cs.CoreV1().Services(metav1.NamespaceDefault).Create(ctx, webService(), metav1.CreateOptions{})
		if err := ensureCreated(err); err != nil {
			t.Fatalf("creating Service: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if _, err := webPods(wctx, cs, names); err != nil {
			t.Fatal(err)
		}
	})
	step(t, "PodToPod", func(t *testing.T) { checkPodToPod(ctx, t, cs, names) })
	step(t, "ServiceSpreadsOverAllNodes", func(t *testing.T) { checkServiceSpread(ctx, t, cs, names) })
	step(t, "CoreDNSResolvesService", func(t *testing.T) { checkDNS(ctx, t, cs, workers[0].Name) })

	step(t, "WorkerReboot", func(t *testing.T) {
		w := workers[0]
		if err := w.Reboot(ctx); err != nil {
			t.Fatal(err)
		}
		booted, err := w.KubeletStarted()
		if err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "the web and kube-proxy pods on "+w.Name+" to restart", func(ctx context.Context) error {
			if err := restartedSince(ctx, cs, metav1.NamespaceDefault, "app="+webName, w.Name, booted); err != nil {
				return err
			}
			return restartedSince(ctx, cs, metav1.NamespaceSystem, "k8s-app=kube-proxy", w.Name, booted)
		})
		wait(ctx, t, time.Minute, "all nodes Ready", func(ctx context.Context) error {
			return framework.NodesReady(ctx, cs, names...)
		})
		checkServiceSpread(ctx, t, cs, names)
	})

	step(t, "ControlPlaneReboot", func(t *testing.T) {
		if err := cp.Reboot(ctx); err != nil {
			t.Fatal(err)
		}
		booted, err := cp.KubeletStarted()
		if err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "apiserver /readyz", func(ctx context.Context) error {
			return framework.Readyz(ctx, cs)
		})
		wait(ctx, t, 5*time.Minute, "the control plane on "+cp.Name+" to restart", func(ctx context.Context) error {
			return restartedSince(ctx, cs, metav1.NamespaceSystem, "tier=control-plane", cp.Name, booted)
		})
		wait(ctx, t, 3*time.Minute, "all nodes Ready and kube-system pods Ready", func(ctx context.Context) error {
			if err := framework.NodesReady(ctx, cs, names...); err != nil {
				return err
			}
			return framework.KubeSystemReady(ctx, cs, 6+len(nodes))
		})
		wait(ctx, t, 3*time.Minute, "the web pod on "+cp.Name+" to restart", func(ctx context.Context) error {
			return restartedSince(ctx, cs, metav1.NamespaceDefault, "app="+webName, cp.Name, booted)
		})
		checkPodToPod(ctx, t, cs, names)
		checkServiceSpread(ctx, t, cs, names)
		checkDNS(ctx, t, cs, cp.Name)
	})
}

// step runs a named part of a suite; a failed step ends the suite, since later steps build
// on it.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	start := time.Now()
	if !t.Run(name, f) {
		t.Fatalf("step %s failed; later steps depend on it", name)
	}
	t.Logf("step %s: %s (%s to %s)", name, time.Since(start).Round(time.Millisecond),
		start.Format("15:04:05.000"), time.Now().Format("15:04:05.000"))
}

// wait polls check until it passes, failing t after timeout.
func wait(ctx context.Context, t *testing.T, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := framework.Poll(ctx, time.Second, what, check); err != nil {
		t.Fatal(err)
	}
}
