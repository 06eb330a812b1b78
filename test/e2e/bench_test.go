//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// benchVariant measures the benchmark steps for one way of running the control plane.
// Variants fill the same rows of one table (framework.BenchSteps), one column each.
type benchVariant struct {
	name string
	run  func(ctx context.Context, t *testing.T, h *framework.Harness, table *framework.BenchTable, reboots int)
}

// benchVariants are the table's columns, in order. The selfkube column joins here.
var benchVariants = []benchVariant{
	{name: "kubeadm", run: benchKubeadm},
	{name: "selfkube", run: benchSelfkube},
}

// TestBench measures the benchmark table (`make bench`). It runs only with SELFKUBE_BENCH=1
// and writes the table to $SELFKUBE_BENCH_OUT (default: the artifacts directory).
// SELFKUBE_BENCH_REBOOTS sets how often each reboot is measured (default 3).
func TestBench(t *testing.T) {
	if os.Getenv("SELFKUBE_BENCH") != "1" {
		t.Skip("benchmark: run with SELFKUBE_BENCH=1 (make bench)")
	}
	reboots := 3
	if v := os.Getenv("SELFKUBE_BENCH_REBOOTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SELFKUBE_BENCH_REBOOTS=%q: want a positive number", v)
		}
		reboots = n
	}
	var names []string
	for _, v := range benchVariants {
		names = append(names, v.name)
	}
	table := framework.NewBenchTable(names...)
	table.AddRatio("selfkube", "kubeadm")
	for _, v := range benchVariants {
		t.Run(v.name, func(t *testing.T) {
			h := framework.NewForTest(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			v.run(ctx, t, h, table, reboots)
		})
	}
	md := table.Markdown()
	out := os.Getenv("SELFKUBE_BENCH_OUT")
	if out == "" {
		out = filepath.Join(framework.ConfigFromEnv().ArtifactsDir, "bench.md")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("benchmark table (%s):\n%s", out, md)
}

// since polls check every 50 ms and returns the time from start until it first passes.
func since(ctx context.Context, t *testing.T, start time.Time, timeout time.Duration, what string, check func(context.Context) error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := framework.Poll(ctx, 50*time.Millisecond, what, check); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func benchKubeadm(ctx context.Context, t *testing.T, h *framework.Harness, table *framework.BenchTable, reboots int) {
	const variant = "kubeadm"
	cp, err := h.Up(ctx, testNodes[0].name, testNodes[0].ip)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := h.Up(ctx, testNodes[1].name, testNodes[1].ip)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	c, wall, err := h.KubeadmInit(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	table.Add(variant, framework.StepInitWall, wall)
	table.Add(variant, framework.StepInitToReady, since(ctx, t, start, 3*time.Minute, "control-plane node Ready",
		func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cp.Name) }))

	start = time.Now()
	wall, err = c.Join(ctx, worker)
	if err != nil {
		t.Fatal(err)
	}
	table.Add(variant, framework.StepJoinWall, wall)
	table.Add(variant, framework.StepJoinToReady, since(ctx, t, start, 3*time.Minute, "worker node Ready",
		func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cp.Name, worker.Name) }))

	// Reboots are measured from a settled cluster: every kube-system pod Ready.
	minSystem := 8 // apiserver, controller-manager, scheduler, etcd, 2 CoreDNS, 2 kube-proxy
	settle := func() {
		since(ctx, t, time.Now(), 5*time.Minute, "a settled cluster", func(ctx context.Context) error {
			if err := framework.NodesReady(ctx, cs, cp.Name, worker.Name); err != nil {
				return err
			}
			return framework.KubeSystemReady(ctx, cs, minSystem)
		})
	}
	for i := 0; i < reboots; i++ {
		settle()
		benchControlPlaneReboot(ctx, t, table, variant, cs, cp, minSystem)
	}
	benchWorkerReboots(ctx, t, table, variant, cs, worker, settle, reboots)
}

// benchControlPlaneReboot reboots the control-plane node once and measures, from its
// kubelet's start, the API answering /readyz, the control plane reconverged, and every
// kube-system pod Ready again.
func benchControlPlaneReboot(ctx context.Context, t *testing.T, table *framework.BenchTable, variant string,
	cs kubernetes.Interface, cp *framework.Node, minSystem int) {
	booted := reboot(ctx, t, cp)
	table.Add(variant, framework.StepCPRebootReadyz, since(ctx, t, booted, 3*time.Minute, "apiserver /readyz",
		func(ctx context.Context) error { return framework.Readyz(ctx, cs) }))
	table.Add(variant, framework.StepCPRebootControl, since(ctx, t, booted, 5*time.Minute, "control plane reconverged",
		func(ctx context.Context) error {
			return controlPlaneBack(ctx, cs, cp.Name, booted, cp.HostPath("/etc/kubernetes/manifests"))
		}))
	table.Add(variant, framework.StepCPRebootSystem, since(ctx, t, booted, 5*time.Minute, "kube-system pods restarted and Ready",
		func(ctx context.Context) error { return systemRestarted(ctx, cs, cp.Name, booted, minSystem) }))
}

// reboot reboots n and returns when its kubelet started again.
func reboot(ctx context.Context, t *testing.T, n *framework.Node) time.Time {
	t.Helper()
	if err := n.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	booted, err := n.KubeletStarted()
	if err != nil {
		t.Fatal(err)
	}
	return booted
}

// benchWorkerReboots measures, reboots times from a settled cluster, how long the worker's
// kube-proxy takes to run again after its kubelet started.
func benchWorkerReboots(ctx context.Context, t *testing.T, table *framework.BenchTable, variant string,
	cs kubernetes.Interface, worker *framework.Node, settle func(), reboots int) {
	for i := 0; i < reboots; i++ {
		settle()
		booted := reboot(ctx, t, worker)
		table.Add(variant, framework.StepWorkerRebootPods, since(ctx, t, booted, 3*time.Minute, "kube-proxy on the worker restarted",
			func(ctx context.Context) error {
				return restartedSince(ctx, cs, metav1.NamespaceSystem, "k8s-app=kube-proxy", worker.Name, booted)
			}))
	}
}

// systemRestarted checks once that the kube-system pods of the rebooted node run new
// containers and every kube-system pod is Ready.
func systemRestarted(ctx context.Context, cs kubernetes.Interface, node string, booted time.Time, min int) error {
	pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	for _, p := range pods.Items {
		if framework.Terminated(&p) {
			continue
		}
		if err := podRestartedSince(&p, booted); err != nil {
			return err
		}
	}
	return framework.KubeSystemReady(ctx, cs, min)
}

// benchSelfkube measures selfkube on the same substrate: init to hand-over complete (a
// self-hosted control plane, the temporary one removed), join, and worker reboots.
// Control-plane reboots come back through the checkpointer.
func benchSelfkube(ctx context.Context, t *testing.T, h *framework.Harness, table *framework.BenchTable, reboots int) {
	const variant = "selfkube"
	bin := selfkubeBinary(t)
	cpName, cpIP := testNodes[0].name, testNodes[0].ip
	cp, err := h.UpWith(ctx, cpName, cpIP, framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
	if err != nil {
		t.Fatal(err)
	}
	worker, err := h.UpWith(ctx, testNodes[1].name, testNodes[1].ip, framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp.HostPath("/etc/kubernetes/selfkube.yaml"), []byte(selfkubeConfig(cpName, cpIP)), 0o600); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out, err := cp.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml")
	if err != nil {
		t.Fatalf("selfkube init: %v\n%s", err, out)
	}
	table.Add(variant, framework.StepInitWall, time.Since(start))
	cfg, err := framework.RestConfig(cp.HostPath("/etc/kubernetes/admin.conf"), "https://"+cpIP+":6443")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	table.Add(variant, framework.StepInitToReady, since(ctx, t, start, 3*time.Minute, "control-plane node Ready",
		func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cpName) }))

	start = time.Now()
	if out, err := worker.Exec(ctx, append([]string{bin}, joinCommandArgs(t, out)...)...); err != nil {
		t.Fatalf("selfkube join: %v\n%s", err, out)
	}
	table.Add(variant, framework.StepJoinWall, time.Since(start))
	table.Add(variant, framework.StepJoinToReady, since(ctx, t, start, 3*time.Minute, "worker node Ready",
		func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cpName, worker.Name) }))

	// apiserver, controller-manager ×2, scheduler ×2, etcd, 2 CoreDNS, 2 kube-proxy, 2
	// pod-network agents, checkpointer
	minSystem := 13
	settle := func() {
		since(ctx, t, time.Now(), 5*time.Minute, "a settled cluster", func(ctx context.Context) error {
			if err := framework.NodesReady(ctx, cs, cpName, worker.Name); err != nil {
				return err
			}
			if err := controlPlaneBack(ctx, cs, cpName, time.Time{}, cp.HostPath("/etc/kubernetes/manifests")); err != nil {
				return err
			}
			return framework.KubeSystemReady(ctx, cs, minSystem)
		})
	}
	for i := 0; i < reboots; i++ {
		settle()
		benchControlPlaneReboot(ctx, t, table, variant, cs, cp, minSystem)
	}
	benchWorkerReboots(ctx, t, table, variant, cs, worker, settle, reboots)
}
