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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// The versions of the upgrade tests: the cluster starts at upgradeFrom (kubelets too)
// and goes to the pinned release (make upgrade-images builds both).
const (
	upgradeFrom = "v1.35.4"
	// etcdUpgradeTo is the etcd release the members go to (an image of its own).
	etcdUpgradeTo = "v3.6.16"
	// kubeletRestart is `systemctl restart kubelet` on a node of the harness.
	kubeletRestart = "kill $(cat /run/selfkube-node/kubelet.pid)"
)

// coreDNSOf is the CoreDNS release a Kubernetes release runs: kubeadm's for v1.35
// (constants.CoreDNSVersion of kubeadm v1.35.4), selfkube's pinned one for v1.36.
var coreDNSOf = map[string]string{"v1.35.4": "v1.13.1", "v1.36.1": "v1.15.0", "v1.36.3": "v1.15.0"}

// upgradeConfig is selfkubeConfig at another Kubernetes version.
func upgradeConfig(name, ip, version string) string {
	return strings.Replace(selfkubeConfig(name, ip), "imageRepository: registry.local\n",
		"imageRepository: registry.local\nkubernetesVersion: "+version+"\n", 1)
}

// adminOf is the administrator's client of the control plane that node n runs at ip:
// its server URL, config and clientset (admin.conf, as a user of the node would).
func adminOf(t *testing.T, n *framework.Node, ip string) (string, *rest.Config, kubernetes.Interface) {
	t.Helper()
	server := "https://" + ip + ":6443"
	cfg, err := framework.RestConfig(n.HostPath("/etc/kubernetes/admin.conf"), server)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return server, cfg, cs
}

// upgradeNode runs `selfkube upgrade node` on n with the kubelet of the harness's
// release (the target of every upgrade test), restarting it the harness's way.
func upgradeNode(ctx context.Context, h *framework.Harness, n *framework.Node, bin string, extra ...string) (string, error) {
	newKubelet := filepath.Join(h.Config().CacheDir, "bin", "kubernetes-"+h.Config().KubeVersion, "kubelet")
	return n.Exec(ctx, append([]string{bin, "upgrade", "node", "--kubelet-binary", newKubelet,
		"--kubelet-path", framework.KubeletPath, "--restart-command", kubeletRestart, "--timeout", "3m"}, extra...)...)
}

// TestUpgrade upgrades a self-hosted cluster of one control-plane node and a worker,
// made at v1.35.4 with v1.35.4 kubelets, to the pinned release: `selfkube upgrade apply
// VERSION` with the honest prober on every identity (0 failed requests), every
// control-plane pod on the new version, the workloads started before it still running
// (no restart), a Service and DNS after it, kubeadm-config saying the new version (and,
// before, an upgrade that fails at the controller manager rolled back whole); then
// `selfkube upgrade node` on both nodes (refused before the control plane is upgraded),
// and every node reports the new kubelet. init refuses a version it has no images for.
func TestUpgrade(t *testing.T) {
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	target := h.Config().KubeVersion

	const cpName, cpIP, wName, wIP = "up1", "172.31.0.51", "upw", "172.31.0.52"
	opts := framework.UpOptions{NoPodNetwork: true, Selfkube: bin, KubeletVersion: upgradeFrom}
	cp, err := h.UpWith(ctx, cpName, cpIP, opts)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := h.UpWith(ctx, wName, wIP, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := "/etc/kubernetes/selfkube.yaml"

	step(t, "InitRefusesAVersionWithoutImages", func(t *testing.T) {
		if err := os.WriteFile(cp.HostPath(cfgFile), []byte(upgradeConfig(cpName, cpIP, "v1.34.4")), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := cp.Exec(ctx, bin, "init", "--config", cfgFile)
		if err == nil {
			t.Fatalf("init at v1.34.4, whose images no node has, succeeded:\n%s", out)
		}
		// The versions it names are those whose images this machine's cache holds (make
		// long-images adds v1.36.1): at least the two this test uses.
		for _, want := range []string{"[Images]", "no images for Kubernetes v1.34.4", "registry.local/kube-apiserver:v1.34.4",
			"versions with images here: " + upgradeFrom + ", ", target + " (set kubernetesVersion"} {
			if !strings.Contains(out, want) {
				t.Errorf("init's refusal does not say %q:\n%s", want, out)
			}
		}
		if es, _ := os.ReadDir(cp.HostPath("/etc/kubernetes/manifests")); len(es) > 0 {
			t.Errorf("the refused init wrote static pods: %v", es)
		}
	})

	var initOut string
	step(t, "InitAtTheOldVersion", func(t *testing.T) {
		if err := os.WriteFile(cp.HostPath(cfgFile), []byte(upgradeConfig(cpName, cpIP, upgradeFrom)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := cp.Exec(ctx, bin, "init", "--config", cfgFile)
		initOut = out
		if err != nil {
			t.Fatalf("selfkube init at %s: %v\n%s", upgradeFrom, err, out)
		}
		if out, err := worker.Exec(ctx, append([]string{bin}, joinCommandArgs(t, initOut)...)...); err != nil {
			t.Fatalf("join of the worker: %v\n%s", err, out)
		}
	})
	server, adminCfg, cs := adminOf(t, cp, cpIP)
	cpc := newControlPlaneClient(ctx, t, adminCfg)
	nodes := []string{cpName, wName}

	var before map[string]corev1.Pod
	step(t, "ClusterAtTheOldVersion", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "both nodes Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, nodes...) })
		cpc.settled(t, 1, "the operator to record init's control plane")
		requireVersions(ctx, t, cs, upgradeFrom, upgradeFrom)
		if _, err := cs.AppsV1().DaemonSets(metav1.NamespaceDefault).Create(ctx, webDaemonSet(), metav1.CreateOptions{}); ensureCreated(err) != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Services(metav1.NamespaceDefault).Create(ctx, webService(), metav1.CreateOptions{}); ensureCreated(err) != nil {
			t.Fatal(err)
		}
		if before, err = webPods(ctx, cs, nodes); err != nil {
			t.Fatal(err)
		}
		checkDNS(ctx, t, cs, wName)
	})

	step(t, "UpgradeNodeRefusedBeforeTheControlPlane", func(t *testing.T) {
		out, err := upgradeNode(ctx, h, worker, bin)
		if err == nil || !strings.Contains(out, "selfkube upgrade apply "+target) {
			t.Errorf("upgrade node before the control plane: %v; want a refusal naming upgrade apply:\n%s", err, out)
		}
		if v, _ := worker.Exec(ctx, framework.KubeletPath, "--version"); !strings.Contains(v, upgradeFrom) {
			t.Errorf("the refused upgrade replaced the kubelet: it says %q", v)
		}
	})

	step(t, "UpgradePlan", func(t *testing.T) {
		out, err := cp.Exec(ctx, bin, "upgrade", "plan", target)
		t.Logf("selfkube upgrade plan %s:\n%s", target, out)
		if err != nil || !strings.Contains(out, "✓ "+target) {
			t.Errorf("upgrade plan %s: %v; want it listed as a version to go to, nothing blocking", target, err)
		}
	})

	targets := availabilityTargets(ctx, t, cs, cp, server)
	step(t, "FailedUpgradeRolledBack", func(t *testing.T) {
		// An upgrade that fails by construction at its third component (a controller
		// manager that cannot start) is rolled back whole: the apiserver, upgraded first,
		// goes back to the old version too, and no request fails.
		var out string
		var upErr error
		start := time.Now()
		rep, informed := measureAvailability(ctx, t, cs, "failed-upgrade", targets, func() {
			out, upErr = cp.Exec(ctx, bin, "upgrade", "apply", target, "--set", "controllerManager.extraArgs.no-such-flag=1", "--timeout", "15m")
		})
		t.Logf("the failing upgrade took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
		if upErr == nil || !strings.Contains(out, "rolled back") || !strings.Contains(out, "kube-controller-manager") {
			t.Errorf("upgrade apply of a failing upgrade: %v; want it to fail, saying kube-controller-manager was rolled back", upErr)
		}
		requireNoGap(t, rep, informed)
		requireVersions(ctx, t, cs, upgradeFrom, upgradeFrom)
		if cm, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kubeadm-config", metav1.GetOptions{}); err != nil ||
			!strings.Contains(cm.Data["ClusterConfiguration"], "kubernetesVersion: "+upgradeFrom) {
			t.Errorf("kubeadm-config after the rolled-back upgrade (%v): want it still at %s:\n%v", err, upgradeFrom, cm)
		}
	})

	step(t, "UpgradeControlPlane", func(t *testing.T) {
		var out string
		var upErr error
		start := time.Now()
		rep, informed := measureAvailability(ctx, t, cs, "control-plane-upgrade", targets, func() {
			out, upErr = cp.Exec(ctx, bin, "upgrade", "apply", target, "--unset", "controllerManager.extraArgs.no-such-flag", "--timeout", "15m")
		})
		t.Logf("selfkube upgrade apply %s took %s:\n%s", target, time.Since(start).Round(time.Millisecond), out)
		if upErr != nil {
			t.Fatalf("upgrade apply %s: %v", target, upErr)
		}
		requireNoGap(t, rep, informed)
		requireVersions(ctx, t, cs, target, upgradeFrom)
	})

	step(t, "WorkloadsKeptRunning", func(t *testing.T) {
		after, err := webPods(ctx, cs, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			a, b := after[n], before[n]
			if a.UID != b.UID || restarts(&a) != restarts(&b) {
				t.Errorf("the web pod on %s was replaced or restarted by the upgrade: %s (%d restarts) → %s (%d restarts)",
					n, b.UID, restarts(&b), a.UID, restarts(&a))
			}
		}
		checkServiceSpread(ctx, t, cs, nodes)
		checkDNS(ctx, t, cs, wName)
	})

	step(t, "KubeadmConfigSaysTheVersion", func(t *testing.T) {
		wait(ctx, t, time.Minute, "kubeadm-config at "+target, func(ctx context.Context) error {
			cm, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kubeadm-config", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !strings.Contains(cm.Data["ClusterConfiguration"], "kubernetesVersion: "+target) {
				return fmt.Errorf("kubeadm-config says:\n%s", cm.Data["ClusterConfiguration"])
			}
			return nil
		})
	})

	step(t, "UpgradeNodes", func(t *testing.T) {
		rep, informed := measureAvailability(ctx, t, cs, "kubelet-upgrade", targets, func() {
			// The worker with its kubelet's own credentials; the control-plane node drained,
			// with the administrator's.
			for _, u := range []struct {
				n     *framework.Node
				extra []string
			}{{worker, nil}, {cp, []string{"--drain"}}} {
				start := time.Now()
				out, err := upgradeNode(ctx, h, u.n, bin, u.extra...)
				t.Logf("upgrade node on %s took %s:\n%s", u.n.Name, time.Since(start).Round(time.Millisecond), out)
				if err != nil {
					t.Errorf("upgrade node on %s: %v", u.n.Name, err)
				}
			}
		})
		// The new kubelet computes the static pods anew (its defaults are the new
		// release's) and restarts etcd, the only member here: requests wait for it, a
		// few of them beyond the 2 s limit. Anything but a timeout fails.
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		requireVersions(ctx, t, cs, target, target)
		n, err := cs.CoreV1().Nodes().Get(ctx, cpName, metav1.GetOptions{})
		if err != nil || n.Spec.Unschedulable {
			t.Errorf("the drained node is still cordoned after its upgrade: %v", err)
		}
		out, err := upgradeNode(ctx, h, worker, bin)
		if err != nil || !strings.Contains(out, "nothing to do") {
			t.Errorf("upgrade node again: %v; want nothing to do:\n%s", err, out)
		}
	})
}

// requireVersions checks that the apiserver says version, every control-plane pod runs
// it (Ready), and every node's kubelet reports kubelet.
func requireVersions(ctx context.Context, t *testing.T, cs kubernetes.Interface, version, kubelet string) {
	t.Helper()
	wait(ctx, t, 3*time.Minute, "the control plane at "+version+", kubelets at "+kubelet, func(ctx context.Context) error {
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			return err
		}
		if v.GitVersion != version {
			return fmt.Errorf("/version says %s", v.GitVersion)
		}
		for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
			if err := podsRun(ctx, cs, c, version); err != nil {
				return err
			}
		}
		// CoreDNS's tag only: the harness's CoreDNS images are the pinned build under each
		// tag a release asks for (hack/images).
		if want, ok := coreDNSOf[version]; ok {
			if err := podsRun(ctx, cs, "coredns", want); err != nil {
				return err
			}
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Items {
			if n.Status.NodeInfo.KubeletVersion != kubelet {
				return fmt.Errorf("node %s reports kubelet %s", n.Name, n.Status.NodeInfo.KubeletVersion)
			}
		}
		return nil
	})
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}
