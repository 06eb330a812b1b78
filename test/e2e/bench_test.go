//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/selfkube/selfkube/test/e2e/framework"
	"github.com/selfkube/selfkube/test/e2e/probe"
)

// benchVariant measures the benchmark steps for one way of running the control plane.
// Variants fill the same rows of one table (framework.BenchSteps), one column each.
type benchVariant struct {
	name string // the column
	test string // the subtest, when a column has more than one (default: name)
	run  func(ctx context.Context, t *testing.T, h *framework.Harness, b *bench)
}

// bench is what a variant adds its measurements to.
type bench struct {
	table   *framework.BenchTable        // durations
	avail   *framework.AvailabilityTable // the honest prober's figures per identity
	reboots int                          // how often each reboot and roll-out is measured
}

// The availability scenarios of the benchmark. Every identity counts from its own first
// 2xx; none is in system:masters.
const (
	availInit       = "init (until node Ready and, for selfkube, the temporary control plane gone)"
	availRollout    = "apiserver flag change on one node"
	availReboot     = "control-plane reboot"
	availCPChange   = "apiserver flag change through the ControlPlane resource"
	availCPRollback = "bad apiserver change through the ControlPlane resource, rolled back"
	availCPChange3  = "three control-plane nodes: apiserver flag change through the ControlPlane resource"
	availCPRollbk3  = "three control-plane nodes: bad apiserver change, rolled back"
	availEtcd3      = "three control-plane nodes: etcd flag change, member by member"
	availUpgrade1   = "Kubernetes upgrade v1.35.4 → v1.36.3, one control-plane node"
	availUpgrade3   = "Kubernetes upgrade v1.35.4 → v1.36.3, three control-plane nodes"
)

// benchVariants are the table's columns, in order. The selfkube column joins here.
var benchVariants = []benchVariant{
	{name: "kubeadm", run: benchKubeadm},
	{name: "selfkube", run: benchSelfkube},
	{name: "selfkube", test: "selfkube-three-control-planes", run: benchSelfkubeHA},
	{name: "kubeadm", test: "kubeadm-upgrade", run: benchKubeadmUpgrade},
	{name: "selfkube", test: "selfkube-upgrade", run: benchSelfkubeUpgrade},
	{name: "selfkube", test: "selfkube-upgrade-three-control-planes", run: benchSelfkubeUpgradeHA},
	{name: "selfkube", test: "selfkube-recover", run: benchSelfkubeRecover},
	{name: "kubeadm", test: "kubeadm-certs", run: benchKubeadmCerts},
	{name: "selfkube", test: "selfkube-certs", run: benchSelfkubeCerts},
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
		if !slices.Contains(names, v.name) {
			names = append(names, v.name)
		}
	}
	table := framework.NewBenchTable(names...)
	table.AddRatio("selfkube", "kubeadm")
	b := &bench{table: table, avail: framework.NewAvailabilityTable(names...), reboots: reboots}
	for _, v := range benchVariants {
		name := v.name
		if v.test != "" {
			name = v.test
		}
		t.Run(name, func(t *testing.T) {
			h := framework.NewForTest(t)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
			defer cancel()
			v.run(ctx, t, h, b)
		})
	}
	md := table.Markdown() + "\nAvailability, measured by the honest prober (test/e2e/probe): a new TLS connection per request at 20/s per identity " +
		"(and one keep-alive client at 5/s), 2 s limit per request, each identity counted from its own first 2xx:\n\n" + b.avail.Markdown()
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

func benchKubeadm(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "kubeadm"
	table := b.table
	cp, err := h.Up(ctx, testNodes[0].name, testNodes[0].ip)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := h.Up(ctx, testNodes[1].name, testNodes[1].ip)
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + cp.IP + ":6443"
	setup := func() (*rest.Config, error) {
		return framework.RestConfig(cp.HostPath("/etc/kubernetes/super-admin.conf"), server)
	}

	start := time.Now()
	initProbe := startEarlyProbe(ctx, setup, cp, server, probe.Options{})
	c, wall, err := h.KubeadmInit(ctx, cp)
	if err != nil {
		initProbe.Stop()
		t.Fatal(err)
	}
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	table.Add(variant, framework.StepInitWall, wall)
	table.Add(variant, framework.StepInitToReady, since(ctx, t, start, 3*time.Minute, "control-plane node Ready",
		func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cp.Name) }))
	b.addEarly(t, variant, availInit, initProbe)

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
	targets := availabilityTargets(ctx, t, cs, cp, server)
	for i := 0; i < b.reboots; i++ {
		settle()
		// kubeadm's way: edit the static pod's manifest; the kubelet restarts the apiserver.
		flag := fmt.Sprintf("--max-requests-inflight=%d", 401+i)
		b.rollout(ctx, t, variant, targets, func() { kubeadmAPIServerFlag(ctx, t, cs, cp, flag) })
	}
	for i := 0; i < b.reboots; i++ {
		settle()
		benchControlPlaneReboot(ctx, t, b, variant, cs, cp, minSystem, targets)
	}
	benchWorkerReboots(ctx, t, table, variant, cs, worker, settle, b.reboots)
}

// kubeadmAPIServerFlag adds flag to the apiserver's static pod manifest on kubeadm's
// control-plane node n and waits until the apiserver runs with it, Ready.
func kubeadmAPIServerFlag(ctx context.Context, t *testing.T, cs kubernetes.Interface, n *framework.Node, flag string) {
	t.Helper()
	path := n.HostPath("/etc/kubernetes/manifests/kube-apiserver.yaml")
	manifest, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const command = "    - kube-apiserver\n"
	if !strings.Contains(string(manifest), command) {
		t.Fatalf("%s has no line %q to add %s after", path, command, flag)
	}
	changed := strings.Replace(string(manifest), command, command+"    - "+flag+"\n", 1)
	if err := os.WriteFile(path, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	wait(ctx, t, 5*time.Minute, "the apiserver with "+flag+", Ready", func(ctx context.Context) error {
		p, err := cs.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, "kube-apiserver-"+n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !slices.Contains(p.Spec.Containers[0].Command, flag) || !framework.PodReady(p) {
			return fmt.Errorf("the apiserver pod is not yet the new Ready one")
		}
		return framework.Readyz(ctx, cs)
	})
}

// rollout measures one apiserver roll-out (change makes it and waits until it is done) on
// the honest prober, from 2 s before to 3 s after.
func (b *bench) rollout(ctx context.Context, t *testing.T, variant string, targets []probe.Target, change func()) {
	t.Helper()
	rep := probeDuring(ctx, t, probe.Options{}, targets, change)
	t.Logf("%s, %s:\n%s", variant, availRollout, rep.Table())
	b.avail.Add(variant, availRollout, rep)
}

// addEarly stops an earlyProbe and adds its figures.
func (b *bench) addEarly(t *testing.T, variant, scenario string, e *earlyProbe) {
	t.Helper()
	rep, err := e.Stop()
	if err != nil {
		t.Errorf("%s, %s: %v", variant, scenario, err)
	}
	t.Logf("%s, %s:\n%s", variant, scenario, rep.Table())
	b.avail.Add(variant, scenario, rep)
}

// benchControlPlaneReboot reboots the control-plane node once and measures, from its
// kubelet's start, the API answering /readyz and an RBAC user, the control plane
// reconverged, and every kube-system pod Ready again; and, on the honest prober, what
// each identity lost from its first 2xx until then.
func benchControlPlaneReboot(ctx context.Context, t *testing.T, b *bench, variant string,
	cs kubernetes.Interface, cp *framework.Node, minSystem int, targets []probe.Target) {
	table := b.table
	p, booted := rebootProbed(ctx, t, probe.Options{}, targets, cp)
	defer p.Stop()
	table.Add(variant, framework.StepCPRebootReadyz, since(ctx, t, booted, 3*time.Minute, "apiserver /readyz",
		func(ctx context.Context) error { return framework.Readyz(ctx, cs) }))
	table.Add(variant, framework.StepCPRebootControl, since(ctx, t, booted, 5*time.Minute, "control plane reconverged",
		func(ctx context.Context) error {
			return controlPlaneBack(ctx, cs, cp.Name, booted, cp.HostPath("/etc/kubernetes/manifests"))
		}))
	table.Add(variant, framework.StepCPRebootSystem, since(ctx, t, booted, 5*time.Minute, "kube-system pods restarted and Ready",
		func(ctx context.Context) error { return systemRestarted(ctx, cs, cp.Name, booted, minSystem) }))
	rep := p.Stop()
	t.Logf("%s, %s:\n%s", variant, availReboot, rep.Table())
	if user, ok := rep.Target("RBAC user"); ok && !user.WindowStart.IsZero() {
		table.Add(variant, framework.StepCPRebootRBAC, user.WindowStart.Sub(booted))
	} else {
		t.Errorf("%s: the RBAC user got no answer after the reboot", variant)
	}
	b.avail.Add(variant, availReboot, rep)
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
func benchSelfkube(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "selfkube"
	table := b.table
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

	server := "https://" + cpIP + ":6443"
	setup := func() (*rest.Config, error) {
		return framework.RestConfig(cp.HostPath("/var/lib/selfkube/assets/auth/super-admin.conf"), server)
	}
	start := time.Now()
	initProbe := startEarlyProbe(ctx, setup, cp, server, probe.Options{})
	out, err := cp.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml")
	if err != nil {
		initProbe.Stop()
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
	wait(ctx, t, 2*time.Minute, "the temporary control plane gone", func(ctx context.Context) error {
		return temporaryControlPlaneGone(ctx, cs, cp.HostPath("/etc/kubernetes/manifests"))
	})
	time.Sleep(3 * time.Second) // what the retirement costs shows after it
	b.addEarly(t, variant, availInit, initProbe)

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
	targets := availabilityTargets(ctx, t, cs, cp, server)
	for i := 0; i < b.reboots; i++ {
		settle()
		flag := fmt.Sprintf("--max-requests-inflight=%d", 401+i)
		b.rollout(ctx, t, variant, targets, func() {
			addAPIServerFlag(ctx, t, cs, flag)
			wait(ctx, t, 5*time.Minute, "the new apiserver pod to replace the old one", func(ctx context.Context) error {
				return apiServerRolledOut(ctx, cs, 1, withFlag(flag))
			})
		})
	}
	// Changes through the ControlPlane resource: a good one, and a bad one that the
	// operator rolls back (kubeadm has neither: its row stays empty).
	cpc := newControlPlaneClient(ctx, t, cfg)
	for i := 0; i < b.reboots; i++ {
		settle()
		for _, c := range []struct{ step, scenario, patch string }{
			{framework.StepCPChange, availCPChange, fmt.Sprintf(`{"spec":{"apiServer":{"extraArgs":{"no-such-flag":null,"max-requests-inflight":"%d"}}}}`, 501+i)},
			{framework.StepCPRollback, availCPRollback, `{"spec":{"apiServer":{"extraArgs":{"no-such-flag":"1"}}}}`},
		} {
			rep := probeDuring(ctx, t, probe.Options{}, targets, func() {
				start := time.Now()
				gen := cpc.patch(t, c.patch)
				cpc.settled(t, gen, c.scenario)
				table.Add(variant, c.step, time.Since(start))
			})
			t.Logf("%s, %s:\n%s", variant, c.scenario, rep.Table())
			b.avail.Add(variant, c.scenario, rep)
		}
	}
	for i := 0; i < b.reboots; i++ {
		settle()
		benchControlPlaneReboot(ctx, t, b, variant, cs, cp, minSystem, targets)
	}
	benchWorkerReboots(ctx, t, table, variant, cs, worker, settle, b.reboots)
}

// temporaryControlPlaneGone checks once that init's temporary control plane is retired:
// the node's static pods are etcd's alone, and every apiserver, controller manager and
// scheduler pod belongs to a DaemonSet or ReplicaSet (no mirror or checkpoint pod).
func temporaryControlPlaneGone(ctx context.Context, cs kubernetes.Interface, manifests string) error {
	es, err := os.ReadDir(manifests)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Name() != "etcd.yaml" {
			return fmt.Errorf("static pod %s still there", e.Name())
		}
	}
	pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if !slices.Contains(controlPlaneComponents, p.Labels["component"]) {
			continue
		}
		if len(p.OwnerReferences) == 0 || (p.OwnerReferences[0].Kind != "DaemonSet" && p.OwnerReferences[0].Kind != "ReplicaSet") {
			return fmt.Errorf("pod %s is not owned by a controller", p.Name)
		}
	}
	return nil
}

// benchSelfkubeHA measures changes through the ControlPlane resource on three
// control-plane nodes and a worker: an apiserver flag (rolled node by node), an unknown
// flag (rolled back) and an etcd flag (member by member), each timed from the patch to
// settled, with the honest prober at ha1 (every identity), the RBAC user at ha2 and ha3,
// and the RBAC user and the worker's kubelet through the worker's api-proxy.
func benchSelfkubeHA(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "selfkube"
	bin := selfkubeBinary(t)
	cluster := upHACluster(ctx, t, h, bin, "")
	cpc := cluster.cpc
	targets, opts := haTargets(ctx, t, cluster)
	for i := 0; i < b.reboots; i++ {
		for _, c := range []struct{ step, scenario, patch string }{
			{framework.StepCPChange3, availCPChange3, fmt.Sprintf(`{"spec":{"apiServer":{"extraArgs":{"no-such-flag":null,"max-requests-inflight":"%d"}}}}`, 601+i)},
			{framework.StepCPRollback3, availCPRollbk3, `{"spec":{"apiServer":{"extraArgs":{"no-such-flag":"1"}}}}`},
			{framework.StepEtcdChange3, availEtcd3, fmt.Sprintf(`{"spec":{"apiServer":{"extraArgs":{"no-such-flag":null}},"etcd":{"extraArgs":{"snapshot-count":"%d"}}}}`, 5001+i)},
		} {
			rep := probeDuring(ctx, t, opts, targets, func() {
				start := time.Now()
				gen := cpc.patch(t, c.patch)
				cpc.settled(t, gen, c.scenario)
				b.table.Add(variant, c.step, time.Since(start))
			})
			t.Logf("%s, %s:\n%s", variant, c.scenario, rep.Table())
			b.avail.Add(variant, c.scenario, rep)
		}
	}
}

// benchKubeadmUpgrade measures kubeadm's upgrade of one control-plane node from
// upgradeFrom to the pinned release (`kubeadm upgrade apply`), with the honest prober:
// the figure selfkube's upgrade is set beside.
func benchKubeadmUpgrade(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "kubeadm"
	cp, err := h.UpWith(ctx, testNodes[0].name, testNodes[0].ip, framework.UpOptions{KubeletVersion: upgradeFrom})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := h.KubeadmInitAt(ctx, cp, upgradeFrom)
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + cp.IP + ":6443"
	wait(ctx, t, 5*time.Minute, "a settled cluster", func(ctx context.Context) error {
		if err := framework.NodesReady(ctx, cs, cp.Name); err != nil {
			return err
		}
		return framework.KubeSystemReady(ctx, cs, 6)
	})
	target := h.Config().KubeVersion
	targets := availabilityTargets(ctx, t, cs, cp, server)
	rep := probeDuring(ctx, t, probe.Options{}, targets, func() {
		start := time.Now()
		out, err := cp.Exec(ctx, h.Config().Kubeadm(), "upgrade", "apply", target, "--yes", "--ignore-preflight-errors", strings.Join(framework.KubeadmPreflightIgnored, ","))
		if err != nil {
			t.Fatalf("kubeadm upgrade apply %s: %v\n%s", target, err, out)
		}
		wait(ctx, t, 5*time.Minute, "the control plane at "+target, func(ctx context.Context) error {
			return staticControlPlaneAt(ctx, cs, cp.Name, target)
		})
		b.table.Add(variant, framework.StepUpgrade1, time.Since(start))
	})
	t.Logf("%s, %s:\n%s", variant, availUpgrade1, rep.Table())
	b.avail.Add(variant, availUpgrade1, rep)
}

// staticControlPlaneAt checks once that the static control-plane pods of node run
// version, Ready, and the API says it.
func staticControlPlaneAt(ctx context.Context, cs kubernetes.Interface, node, version string) error {
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		p, err := cs.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, c+"-"+node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.HasSuffix(p.Spec.Containers[0].Image, ":"+version) || !framework.PodReady(p) {
			return fmt.Errorf("%s runs %s (Ready %v)", p.Name, p.Spec.Containers[0].Image, framework.PodReady(p))
		}
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	if v.GitVersion != version {
		return fmt.Errorf("/version says %s", v.GitVersion)
	}
	return nil
}

// benchSelfkubeUpgrade measures `selfkube upgrade apply` of one control-plane node from
// upgradeFrom to the pinned release, with the honest prober.
func benchSelfkubeUpgrade(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "selfkube"
	bin := selfkubeBinary(t)
	cpName, cpIP := testNodes[0].name, testNodes[0].ip
	cp, err := h.UpWith(ctx, cpName, cpIP, framework.UpOptions{NoPodNetwork: true, Selfkube: bin, KubeletVersion: upgradeFrom})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp.HostPath("/etc/kubernetes/selfkube.yaml"), []byte(upgradeConfig(cpName, cpIP, upgradeFrom)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cp.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml"); err != nil {
		t.Fatalf("selfkube init at %s: %v\n%s", upgradeFrom, err, out)
	}
	server, cfg, cs := adminOf(t, cp, cpIP)
	newControlPlaneClient(ctx, t, cfg).settled(t, 1, "the operator to record init's control plane")
	target := h.Config().KubeVersion
	targets := availabilityTargets(ctx, t, cs, cp, server)
	rep := probeDuring(ctx, t, probe.Options{}, targets, func() {
		start := time.Now()
		if out, err := cp.Exec(ctx, bin, "upgrade", "apply", target, "--timeout", "15m"); err != nil {
			t.Fatalf("selfkube upgrade apply %s: %v\n%s", target, err, out)
		}
		b.table.Add(variant, framework.StepUpgrade1, time.Since(start))
	})
	t.Logf("%s, %s:\n%s", variant, availUpgrade1, rep.Table())
	b.avail.Add(variant, availUpgrade1, rep)
	requireVersions(ctx, t, cs, target, upgradeFrom)
}

// benchSelfkubeUpgradeHA measures `selfkube upgrade apply` of three control-plane nodes
// and a worker from upgradeFrom to the pinned release, with the prober of
// benchSelfkubeHA (every apiserver, the worker's api-proxy).
func benchSelfkubeUpgradeHA(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "selfkube"
	bin := selfkubeBinary(t)
	c := upHACluster(ctx, t, h, bin, upgradeFrom)
	target := h.Config().KubeVersion
	targets, opts := haTargets(ctx, t, c)
	rep := probeDuring(ctx, t, opts, targets, func() {
		start := time.Now()
		if out, err := c.first.Exec(ctx, bin, "upgrade", "apply", target, "--timeout", "20m"); err != nil {
			t.Fatalf("selfkube upgrade apply %s: %v\n%s", target, err, out)
		}
		b.table.Add(variant, framework.StepUpgrade3, time.Since(start))
	})
	t.Logf("%s, %s:\n%s", variant, availUpgrade3, rep.Table())
	b.avail.Add(variant, availUpgrade3, rep)
	requireVersions(ctx, t, c.cs, target, upgradeFrom)
}
