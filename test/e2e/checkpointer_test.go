//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/test/e2e/framework"
)

// controlPlaneComponents are the self-hosted components the checkpointer keeps; each
// must be back, Ready and restarted, after a reboot.
var controlPlaneComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// controlPlaneBack checks once that the control plane of node has reconverged after a
// boot at booted: its apiserver and etcd, and whichever controller-manager and scheduler
// pods it runs, run containers started since and are Ready; the cluster has a Ready
// controller manager and scheduler; and no checkpoint is still standing in (mirror pods
// of checkpoints are gone, and so are their static-pod files when manifests is not empty).
func controlPlaneBack(ctx context.Context, cs kubernetes.Interface, node string, booted time.Time, manifests string) error {
	pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	here, ready := map[string]bool{}, map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if framework.Terminated(p) {
			continue // e.g. preempted by the kubelet at boot to admit a critical pod; replaced
		}
		if p.Spec.NodeName == node && strings.HasPrefix(p.Name, "checkpoint-") {
			return fmt.Errorf("checkpoint %s still runs", p.Name)
		}
		c := p.Labels["component"]
		if !slices.Contains(controlPlaneComponents, c) && c != "etcd" {
			continue
		}
		if p.Spec.NodeName != node {
			ready[c] = ready[c] || framework.PodReady(p)
			continue
		}
		if err := podRestartedSince(p, booted); err != nil {
			return err
		}
		here[c], ready[c] = true, true
	}
	for _, c := range []string{"kube-apiserver", "etcd"} {
		if !here[c] {
			return fmt.Errorf("no Ready %s pod on %s", c, node)
		}
	}
	for _, c := range controlPlaneComponents {
		if !ready[c] {
			return fmt.Errorf("no Ready %s pod in the cluster", c)
		}
	}
	if manifests != "" {
		es, err := os.ReadDir(manifests)
		if err != nil {
			return err
		}
		for _, e := range es {
			if strings.HasPrefix(e.Name(), "checkpoint-") {
				return fmt.Errorf("static pod %s is still active", e.Name())
			}
		}
	}
	return nil
}

// TestCheckpointer proves that a self-hosted control plane survives what ended
// self-hosting elsewhere: full reboots of its node (right after init, and five in a
// row), a killed apiserver, deleted scheduler pods, and a changed apiserver flag
// followed by a reboot. During each recovery a client keeps sending requests: once the
// API answers, none may fail, through the hand-back from checkpoint to self-hosted pod.
func TestCheckpointer(t *testing.T) {
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	const cpName, cpIP = "ck1", "172.31.0.31"
	const workerName, workerIP = "ck2", "172.31.0.32"
	server := "https://" + cpIP + ":6443"

	cp, err := h.UpWith(ctx, cpName, cpIP, framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp.HostPath("/etc/kubernetes/selfkube.yaml"), []byte(selfkubeConfig(cpName, cpIP)), 0o600); err != nil {
		t.Fatal(err)
	}
	manifestsDir := cp.HostPath("/etc/kubernetes/manifests")
	credentials := func() (*rest.Config, error) {
		return framework.RestConfig(cp.HostPath("/etc/kubernetes/admin.conf"), server)
	}

	var initOut string
	var initDone time.Time
	step(t, "Init", func(t *testing.T) {
		out, err := cp.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml")
		initOut, initDone = out, time.Now()
		if err != nil {
			t.Fatalf("selfkube init: %v\n%s", err, out)
		}
		if _, err := os.Stat(cp.HostPath("/etc/kubernetes/checkpoints/kube-apiserver/pod.yaml")); err != nil {
			t.Fatalf("init returned without an apiserver checkpoint on disk: %v", err)
		}
	})
	cfg, err := credentials()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// The identities of the honest prober: an RBAC user (and its keep-alive client), a
	// ServiceAccount and the node's kubelet, none in system:masters.
	targets := availabilityTargets(ctx, t, cs, cp, server)

	// recover reboots the control-plane node and checks the recovery: the API answers,
	// the control plane reconverges, and no request of any identity fails from that
	// identity's first answer after the boot, through the hand-back from checkpoint to
	// self-hosted pod. booted, if not nil, runs as soon as the node's kubelet has started.
	recover := func(t *testing.T, what string, booted func(t *testing.T)) {
		t.Helper()
		prober, kubeletStart := rebootProbed(ctx, t, bootProbe, targets, cp)
		defer prober.Stop()
		if booted != nil {
			booted(t)
		}
		readyz := since(ctx, t, kubeletStart, 3*time.Minute, "apiserver /readyz", func(ctx context.Context) error { return framework.Readyz(ctx, cs) })
		back := since(ctx, t, kubeletStart, 5*time.Minute, "the control plane reconverged", func(ctx context.Context) error {
			return controlPlaneBack(ctx, cs, cpName, kubeletStart, manifestsDir)
		})
		time.Sleep(2 * time.Second) // requests right after the last hand-back count too
		rep := prober.Stop()
		t.Logf("%s: kubelet start → /readyz %.1f s, → control plane reconverged %.1f s; first 2xx of each identity after the boot: %s",
			what, readyz.Seconds(), back.Seconds(), firstAnswers(rep, kubeletStart))
		requireNoRefusal(t, what, rep)
	}

	step(t, "RebootFiveSecondsAfterInit", func(t *testing.T) {
		time.Sleep(time.Until(initDone.Add(5 * time.Second)))
		recover(t, "reboot 5 s after init", nil)
	})

	step(t, "JoinWorkerAndRunWorkload", func(t *testing.T) {
		w, err := h.UpWith(ctx, workerName, workerIP, framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := w.Exec(ctx, append([]string{bin}, joinCommandArgs(t, initOut)...)...); err != nil {
			t.Fatalf("selfkube join: %v\n%s", err, out)
		}
		wait(ctx, t, 2*time.Minute, "both nodes Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cpName, workerName) })
		_, err = cs.AppsV1().DaemonSets(metav1.NamespaceDefault).Create(ctx, webDaemonSet(), metav1.CreateOptions{})
		if err := ensureCreated(err); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 2*time.Minute, "the workload on both nodes", func(ctx context.Context) error {
			_, err := webPods(ctx, cs, []string{cpName, workerName})
			return err
		})
	})

	step(t, "CheckpointAnnotationsCannotBeAbused", func(t *testing.T) {
		// The pods stay for the reboots below: failover must work with them present.
		w, err := h.Node(workerName)
		if err != nil {
			t.Fatal(err)
		}
		startCheckpointAbuse(ctx, t, cs, cpName, workerName, kubeletClient(t, w, server, cfg.CAData))
		checkCheckpointerUnmoved(ctx, t, cs, cp)
	})

	step(t, "FiveRebootsInARow", func(t *testing.T) {
		for i := 1; i <= 5; i++ {
			booted := time.Now()
			recover(t, fmt.Sprintf("reboot %d/5", i), nil)
			wait(ctx, t, 2*time.Minute, "the workload running again on both nodes", func(ctx context.Context) error {
				if err := framework.NodesReady(ctx, cs, cpName, workerName); err != nil {
					return err
				}
				if err := restartedSince(ctx, cs, metav1.NamespaceDefault, "app="+webName, cpName, booted); err != nil {
					return err
				}
				_, err := webPods(ctx, cs, []string{cpName, workerName})
				return err
			})
		}
	})

	step(t, "KilledAPIServerRecovers", func(t *testing.T) {
		killed := time.Now()
		if err := killProcess(cpName, "kube-apiserver"); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "the apiserver back, Ready, in a new container", func(ctx context.Context) error {
			return restartedSince(ctx, cs, metav1.NamespaceSystem, "component=kube-apiserver", cpName, killed)
		})
		wait(ctx, t, 2*time.Minute, "no checkpoint left running", func(ctx context.Context) error {
			return controlPlaneBack(ctx, cs, cpName, time.Time{}, manifestsDir)
		})
	})

	step(t, "DeletedSchedulersReplaced", func(t *testing.T) {
		sel := metav1.ListOptions{LabelSelector: "component=kube-scheduler"}
		metricsBefore := checkpointerMetrics(ctx, t, cp)
		old, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Pods(metav1.NamespaceSystem).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "new scheduler pods, scheduled and Ready, and the checkpoint retired", func(ctx context.Context) error {
			pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, sel)
			if err != nil {
				return err
			}
			ready := 0
			for i := range pods.Items {
				p := &pods.Items[i]
				for _, o := range old.Items {
					if o.UID == p.UID {
						return fmt.Errorf("old scheduler pod %s is still there", p.Name)
					}
				}
				if framework.PodReady(p) {
					ready++
				}
			}
			if ready != 2 {
				return fmt.Errorf("%d of 2 new scheduler pods Ready", ready)
			}
			return controlPlaneBack(ctx, cs, cpName, time.Time{}, manifestsDir)
		})
		checkEvent(ctx, t, cs, "CheckpointActivated", "kube-scheduler")
		checkEvent(ctx, t, cs, "CheckpointRetired", "kube-scheduler")
		after := checkpointerMetrics(ctx, t, cp)
		for _, m := range []struct {
			metric string
			delta  float64
		}{
			{`selfkube_checkpointer_actions_total{checkpoint="kube-scheduler",action="Activate"}`, 1},
			{`selfkube_checkpointer_actions_total{checkpoint="kube-scheduler",action="Retire"}`, 1},
		} {
			if d := after[m.metric] - metricsBefore[m.metric]; d != m.delta {
				t.Errorf("%s went up by %v, want %v", m.metric, d, m.delta)
			}
		}
		for metric, want := range map[string]float64{
			`selfkube_checkpointer_checkpoint_active{checkpoint="kube-scheduler"}`: 0,
			"selfkube_checkpointer_api_reachable":                                  1,
		} {
			if got, ok := after[metric]; !ok || got != want {
				t.Errorf("%s = %v (present: %v), want %v", metric, got, ok, want)
			}
		}
	})

	step(t, "FlagChangedThenReboot", func(t *testing.T) {
		const flag = "--max-requests-inflight=401"
		addAPIServerFlag(ctx, t, cs, flag)
		checkpoint := cp.HostPath("/etc/kubernetes/checkpoints/kube-apiserver/pod.yaml")
		wait(ctx, t, 5*time.Minute, "the apiserver checkpoint to follow the new pod", func(ctx context.Context) error {
			b, err := os.ReadFile(checkpoint)
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), flag) {
				return fmt.Errorf("the checkpoint lacks %s", flag)
			}
			return nil
		})
		recover(t, "reboot after the flag change", func(t *testing.T) {
			// The apiserver the kubelet starts at boot, before the API can say anything
			// (activated by the kubelet unit's ExecStartPre, which runs as the unit starts).
			wait(ctx, t, 10*time.Second, "the apiserver checkpoint active at boot, with "+flag, func(context.Context) error {
				b, err := os.ReadFile(cp.HostPath("/etc/kubernetes/manifests/checkpoint-kube-apiserver.yaml"))
				if err != nil {
					return err
				}
				if !strings.Contains(string(b), flag) {
					return fmt.Errorf("the active apiserver checkpoint lacks %s", flag)
				}
				return nil
			})
		})
		pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "component=kube-apiserver"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if !slices.Contains(p.Spec.Containers[0].Command, flag) {
				t.Errorf("apiserver pod %s lacks %s after the reboot", p.Name, flag)
			}
		}
	})

	// A reboot in the middle of a roll-out through the ControlPlane resource: the API
	// comes back (no request lost from each identity's first answer), and the operator
	// finishes a good change and rolls a bad one back.
	cpc := newControlPlaneClient(ctx, t, cfg)
	rebootMidRollout := func(t *testing.T, what, patch string) *controlplane.ControlPlane {
		t.Helper()
		// The kubectl-edit flag above was adopted; the resource is the one truth again.
		gen := cpc.patch(t, patch)
		wait(ctx, t, 2*time.Minute, "the roll-out of the apiserver to begin", func(ctx context.Context) error {
			c, err := cpc.get(ctx)
			if err != nil {
				return err
			}
			if r := c.Status.Rollout; r == nil || r.Generation != gen || !slices.Contains(r.Components, manifests.APIServer) {
				return fmt.Errorf("roll-out %+v, want generation %d's apiserver", r, gen)
			}
			return nil
		})
		recover(t, what, nil)
		return cpc.settled(t, gen, what+": the operator done with the change")
	}
	step(t, "RebootInTheMiddleOfAGoodRollOut", func(t *testing.T) {
		c := rebootMidRollout(t, "reboot in the middle of a good roll-out", `{"spec":{"apiServer":{"extraArgs":{"max-requests-inflight":"402"}}}}`)
		if c.Status.LastKnownGood == nil || c.Status.LastKnownGood.Generation != c.Generation {
			t.Errorf("after the reboot the change did not complete: last-known-good %+v, generation %d", c.Status.LastKnownGood, c.Generation)
		}
		if err := apiServerRolledOut(ctx, cs, 1, withFlag("--max-requests-inflight=402")); err != nil {
			t.Errorf("after the reboot: %v", err)
		}
	})
	step(t, "RebootInTheMiddleOfABadRollOut", func(t *testing.T) {
		c := rebootMidRollout(t, "reboot in the middle of a bad roll-out", `{"spec":{"apiServer":{"extraArgs":{"no-such-flag":"1"}}}}`)
		if c.Status.RolledBack == nil || c.Status.RolledBack.Generation != c.Generation || c.Status.LastKnownGood.Generation >= c.Generation {
			t.Errorf("after the reboot the bad change was not rolled back: rolled back %+v, last-known-good %+v", c.Status.RolledBack, c.Status.LastKnownGood)
		}
		if err := apiServerRolledOut(ctx, cs, 1, withFlag("--max-requests-inflight=402")); err != nil {
			t.Errorf("after the rollback: %v", err)
		}
	})
}

// checkEvent checks that the checkpointer recorded an event with reason about name.
func checkEvent(ctx context.Context, t *testing.T, cs kubernetes.Interface, reason, name string) {
	t.Helper()
	wait(ctx, t, time.Minute, "event "+reason+" for "+name, func(ctx context.Context) error {
		evs, err := cs.CoreV1().Events(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, "checkpoint "+name+" ") && e.Source.Component == "selfkube-checkpointer" {
				return nil
			}
		}
		return fmt.Errorf("no %s event for %s among %d", reason, name, len(evs.Items))
	})
}

// checkpointerMetrics reads the checkpointer's metrics on node n: series → value.
func checkpointerMetrics(ctx context.Context, t *testing.T, n *framework.Node) map[string]float64 {
	t.Helper()
	out, err := n.Exec(ctx, "curl", "-sS", "http://127.0.0.1:10267/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndex(l, " ")
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("metrics line %q: not SERIES VALUE", l)
		}
		m[l[:i]] = v
	}
	return m
}

// killProcess sends SIGKILL to the processes called comm that run in node's cgroup
// (nodes share the host's process namespace: pkill would hit every node).
func killProcess(node, comm string) error { return killCommand(node, comm, "") }
