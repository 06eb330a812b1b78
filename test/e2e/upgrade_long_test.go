//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/test/e2e/framework"
	"github.com/selfkube/selfkube/test/e2e/probe"
)

// patchUpgradeFrom is the patch release of the pinned minor a patch upgrade starts from
// (make long-images builds it).
const patchUpgradeFrom = "v1.36.1"

// requireLong skips a test that only `make e2e-long` runs (it needs make long-images and
// does not fit in CI's time).
func requireLong(t *testing.T) {
	t.Helper()
	if os.Getenv("SELFKUBE_E2E_LONG") == "" {
		t.Skip("run by make e2e-long (SELFKUBE_E2E_LONG=1), which builds its release first")
	}
}

// TestLongPatchUpgradeWithReboot upgrades a one-node control plane from v1.36.1 to the
// pinned release (a patch upgrade) and powers the node off half-way: once every
// apiserver runs the new release and its checkpoint on the node is the new one, before
// the operator is done. The node comes back on that checkpoint (the first apiserver to
// answer after the boot is the new release), and the operator finishes the upgrade;
// `selfkube upgrade node` then brings the kubelet along. No request may fail during the
// upgrade's first half; after the boot, none may be refused, denied or cut off.
func TestLongPatchUpgradeWithReboot(t *testing.T) {
	requireLong(t)
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	target := h.Config().KubeVersion

	const name, ip = "pu1", "172.31.0.61"
	n, err := h.UpWith(ctx, name, ip, framework.UpOptions{NoPodNetwork: true, Selfkube: bin, KubeletVersion: patchUpgradeFrom})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := "/etc/kubernetes/selfkube.yaml"
	step(t, "InitAtTheOldPatch", func(t *testing.T) {
		if err := os.WriteFile(n.HostPath(cfgFile), []byte(upgradeConfig(name, ip, patchUpgradeFrom)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := n.Exec(ctx, bin, "init", "--config", cfgFile); err != nil {
			t.Fatalf("selfkube init at %s: %v\n%s", patchUpgradeFrom, err, out)
		}
	})
	server, adminCfg, cs := adminOf(t, n, ip)
	cpc := newControlPlaneClient(ctx, t, adminCfg)
	step(t, "ClusterAtTheOldPatch", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "the node Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, name) })
		cpc.settled(t, 1, "the operator to record init's control plane")
		requireVersions(ctx, t, cs, patchUpgradeFrom, patchUpgradeFrom)
		out, err := n.Exec(ctx, bin, "upgrade", "plan", target)
		t.Logf("selfkube upgrade plan %s:\n%s", target, out)
		if err != nil || !strings.Contains(out, "✓ "+target) {
			t.Errorf("upgrade plan %s: %v; want it listed as a version to go to, nothing blocking", target, err)
		}
	})

	targets := availabilityTargets(ctx, t, cs, n, server)
	step(t, "RebootHalfWayThroughTheUpgrade", func(t *testing.T) {
		p, err := probe.Start(ctx, probe.Options{}, targets...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		gen := cpc.patch(t, `{"spec":{"kubernetesVersion":"`+target+`"}}`)
		checkpointFile := n.HostPath(filepath.Join(checkpoint.CheckpointsDir, checkpoint.CheckpointAPIServer, "pod.yaml"))
		wait(ctx, t, 5*time.Minute, "the apiserver at "+target+" and its checkpoint on the node the new one", func(ctx context.Context) error {
			if err := podsRun(ctx, cs, "kube-apiserver", target); err != nil {
				return err
			}
			b, err := os.ReadFile(checkpointFile)
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), "kube-apiserver:"+target) {
				return fmt.Errorf("the apiserver's checkpoint is not at %s yet", target)
			}
			return nil
		})
		requireNoLoss(t, "the upgrade's first half (the apiserver)", p.Stop())
		cur, err := cpc.get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Logged, not required: the checkpointer may lag the operator, which then is
		// further than half-way, never done (the kube-proxy and CoreDNS steps follow, each
		// with its soak).
		t.Logf("powering %s off with the operator at %+v (conditions %+v)", name, cur.Status.Rollout, cur.Status.Conditions)
		prober, kubeletStart := rebootProbed(ctx, t, bootProbe, targets, n)
		defer prober.Stop()
		// What the kubelet starts from the node's disk, before any API: the checkpoint of
		// the apiserver it ran last, the new release (activated by the kubelet unit's
		// ExecStartPre, as the unit starts).
		active := n.HostPath(filepath.Join("/etc/kubernetes/manifests", checkpoint.StaticPodName(checkpoint.CheckpointAPIServer)+".yaml"))
		wait(ctx, t, 10*time.Second, "the apiserver checkpoint active at boot, at "+target, func(context.Context) error {
			b, err := os.ReadFile(active)
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), "kube-apiserver:"+target) {
				return fmt.Errorf("the active apiserver checkpoint is not at %s", target)
			}
			return nil
		})
		readyz := since(ctx, t, kubeletStart, 3*time.Minute, "apiserver /readyz", func(ctx context.Context) error { return framework.Readyz(ctx, cs) })
		done := cpc.settled(t, gen, "the operator to finish the upgrade after the reboot")
		finished := time.Since(kubeletStart)
		if lkg := done.Status.LastKnownGood; lkg == nil || lkg.Generation != gen || done.Status.RolledBack != nil && done.Status.RolledBack.Generation == gen {
			t.Fatalf("the upgrade did not finish after the reboot: last-known-good %+v, rolled back %+v", lkg, done.Status.RolledBack)
		}
		requireVersions(ctx, t, cs, target, patchUpgradeFrom)
		t.Logf("kubelet start → /readyz %.1f s, → the upgrade finished %.1f s", readyz.Seconds(), finished.Seconds())
		requireNoRefusal(t, "the reboot half-way through the upgrade", prober.Stop())
	})

	step(t, "UpgradeNode", func(t *testing.T) {
		out, err := upgradeNode(ctx, h, n, bin)
		t.Logf("upgrade node:\n%s", out)
		if err != nil {
			t.Fatalf("upgrade node: %v", err)
		}
		requireVersions(ctx, t, cs, target, target)
	})
}

// podsRun checks that every live pod of component (app.kubernetes.io/name) runs the
// image tag version and is Ready.
func podsRun(ctx context.Context, cs kubernetes.Interface, component, version string) error {
	pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + component})
	if err != nil {
		return err
	}
	running := 0
	for _, p := range pods.Items {
		if framework.Terminated(&p) || p.DeletionTimestamp != nil {
			continue
		}
		if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+version) || !framework.PodReady(&p) {
			return fmt.Errorf("%s runs %s (Ready %v)", p.Name, img, framework.PodReady(&p))
		}
		running++
	}
	if running == 0 {
		return fmt.Errorf("no %s pod", component)
	}
	return nil
}

// TestLongHAUpgrade upgrades three control-plane nodes and a worker, made at v1.35.4 with
// v1.35.4 kubelets, to the pinned release with `selfkube upgrade apply`: the operator goes
// node by node; the honest prober asks at every apiserver and through the worker's
// node-local api-proxy (the path of every worker's kubelet and kube-proxy), where no
// request may fail; at the apiservers, as in TestHA, none may be refused, denied or cut
// off. Then `selfkube upgrade node` on every node, control-plane nodes first.
func TestLongHAUpgrade(t *testing.T) {
	requireLong(t)
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	target := h.Config().KubeVersion

	var c haCluster
	step(t, "ThreeControlPlanesAtTheOldVersion", func(t *testing.T) {
		c = upHACluster(ctx, t, h, bin, upgradeFrom)
		requireVersions(ctx, t, c.cs, upgradeFrom, upgradeFrom)
	})
	targets, opts := haTargets(ctx, t, c)
	step(t, "UpgradeOnThreeNodes", func(t *testing.T) {
		var out string
		var upErr error
		start := time.Now()
		rep, informed := measureAvailabilityWith(ctx, t, c.cs, opts, "three-node-upgrade", targets, func() {
			out, upErr = c.first.Exec(ctx, bin, "upgrade", "apply", target, "--timeout", "20m")
		})
		t.Logf("selfkube upgrade apply %s on three control-plane nodes took %s:\n%s", target, time.Since(start).Round(time.Millisecond), out)
		if upErr != nil {
			t.Fatalf("upgrade apply %s: %v", target, upErr)
		}
		requireNoFailureVia(t, rep, "api-proxy")
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		requireVersions(ctx, t, c.cs, target, upgradeFrom)
	})
	step(t, "UpgradeNodes", func(t *testing.T) {
		// upgrade node checks the kubelet against the control plane: each kubelet may only
		// follow it. Without --drain: the control-plane nodes' kube-system pods stay.
		for _, name := range []string{"ha1", "ha2", "ha3", workerName} {
			start := time.Now()
			out, err := upgradeNode(ctx, h, c.nodes[name], bin)
			t.Logf("upgrade node on %s took %s:\n%s", name, time.Since(start).Round(time.Millisecond), out)
			if err != nil {
				t.Fatalf("upgrade node on %s: %v", name, err)
			}
		}
		requireVersions(ctx, t, c.cs, target, target)
	})
}
