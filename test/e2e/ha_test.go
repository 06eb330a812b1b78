//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/test/e2e/framework"
	"github.com/selfkube/selfkube/test/e2e/probe"
)

// TestHA builds a highly available self-hosted control plane: init on one node, two
// `selfkube join --control-plane`, one worker. It checks three apiservers and a
// three-member etcd; that all three control-plane nodes rebooted at once recover; that
// with the first control-plane node powered off the API keeps answering on the others,
// new pods schedule and run on the remaining nodes, the worker stays Ready (its
// kubelet goes through the node-local API proxy) and a new Service works there (so does
// its kube-proxy, through its pod's api-proxy); that it rejoins when powered on; and
// that reset takes a control-plane node out of etcd.
func TestHA(t *testing.T) {
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	cps := haControlPlanes
	nodes, first := upHANodes(ctx, t, h, bin)
	// clientAt talks to the apiserver of one control-plane node, verifying its certificate.
	clientAt := func(t *testing.T, ip string) kubernetes.Interface {
		t.Helper()
		cfg, err := framework.RestConfig(first.HostPath("/etc/kubernetes/admin.conf"), "https://"+ip+":6443")
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}

	var initOut string
	step(t, "Init", func(t *testing.T) {
		out, err := first.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml")
		initOut = out
		if err != nil {
			t.Fatalf("selfkube init: %v\n%s", err, out)
		}
	})
	cs := clientAt(t, cps[0].ip)
	caData := func(t *testing.T) []byte {
		t.Helper()
		cfg, err := framework.RestConfig(first.HostPath("/etc/kubernetes/admin.conf"), "https://"+cps[0].ip+":6443")
		if err != nil {
			t.Fatal(err)
		}
		return cfg.CAData
	}

	adminCfg, err := framework.RestConfig(first.HostPath("/etc/kubernetes/admin.conf"), "https://"+cps[0].ip+":6443")
	if err != nil {
		t.Fatal(err)
	}
	cpc := newControlPlaneClient(ctx, t, adminCfg)

	step(t, "JoinControlPlanes", func(t *testing.T) {
		workerToken := tokenClient(t, "https://"+cps[0].ip+":6443", caData(t), flagValue(joinCommandArgs(t, initOut), "--token"))
		for _, n := range cps[1:] {
			// One join command per control-plane node: the join deletes the CA hand-off.
			out, err := first.Exec(ctx, bin, "token", "create", "--control-plane", "--print-join-command")
			if err != nil {
				t.Fatalf("token create --control-plane: %v\n%s", err, out)
			}
			join := strings.Fields(strings.TrimSpace(out))
			if len(join) < 3 || join[0] != "selfkube" || !strings.Contains(out, "--certificate-key") {
				t.Fatalf("token create printed no control-plane join command:\n%s", out)
			}
			if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, handOffSecret, metav1.GetOptions{}); err != nil {
				t.Fatalf("the CA hand-off is not in the cluster after token create --control-plane: %v", err)
			}
			if _, err := workerToken.CoreV1().Secrets("kube-system").Get(ctx, handOffSecret, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("GET of the CA hand-off with a worker's token: %v, want Forbidden", err)
			}
			start := time.Now()
			if n.name == "ha3" {
				// Killed once its kubelet runs (an unpromoted etcd learner, a node not yet
				// labelled), the same command finishes the join.
				killJoinAfter(ctx, t, nodes[n.name], "kubelet", append([]string{bin}, join[1:]...))
			}
			out, err = nodes[n.name].Exec(ctx, append([]string{bin}, join[1:]...)...)
			t.Logf("join --control-plane of %s took %s:\n%s", n.name, time.Since(start).Round(time.Millisecond), out)
			if err != nil {
				t.Fatalf("join --control-plane of %s: %v", n.name, err)
			}
			if n.name == "ha3" && !strings.Contains(out, "resuming the join") {
				t.Errorf("the second join of ha3 did not say it resumed:\n%s", out)
			}
			if _, err := os.Stat(nodes[n.name].HostPath("/etc/kubernetes/pki/etcd/ca.key")); err != nil {
				t.Errorf("%s has no etcd CA after joining: %v", n.name, err)
			}
			if _, err := cs.CoreV1().Secrets("kube-system").Get(ctx, handOffSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the CA hand-off is still in the cluster after %s joined: %v", n.name, err)
			}
			checkPrivateDirs(t, nodes[n.name], "/var/lib/etcd", "/etc/kubernetes/pki/etcd")
		}
	})

	step(t, "JoinedNodeRejoinChangesNothing", func(t *testing.T) {
		// A finished join run again (its hand-off is gone, its token may be) changes nothing.
		out, err := first.Exec(ctx, bin, "token", "create", "--control-plane", "--print-join-command")
		if err != nil {
			t.Fatalf("token create --control-plane: %v\n%s", err, out)
		}
		before := snapshotDir(t, nodes["ha2"].HostPath("/etc/kubernetes"))
		out, err = nodes["ha2"].Exec(ctx, append([]string{bin}, strings.Fields(strings.TrimSpace(out))[1:]...)...)
		if err != nil || !strings.Contains(out, "already belongs to a cluster") {
			t.Errorf("join of the joined ha2: %v\n%s", err, out)
		}
		if after := snapshotDir(t, nodes["ha2"].HostPath("/etc/kubernetes")); !slices.Equal(before, after) {
			t.Errorf("a second join changed ha2's /etc/kubernetes")
		}
	})

	step(t, "JoinWorker", func(t *testing.T) {
		if out, err := nodes[workerName].Exec(ctx, append([]string{bin}, joinCommandArgs(t, initOut)...)...); err != nil {
			t.Fatalf("join of the worker: %v\n%s", err, out)
		}
	})

	etcdHealthy := func(ctx context.Context, via string, want int) error {
		c, err := etcd.Dial([]string{etcd.ClientURL(via)}, nodes["ha1"].HostPath("/etc/kubernetes/pki/etcd"))
		if err != nil {
			return err
		}
		defer c.Close()
		members, err := c.Members(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, m := range members {
			if !m.Learner && m.Name != "" {
				voters++
			}
		}
		if len(members) != want || voters != want {
			return fmt.Errorf("etcd has %d members, %d of them started voters; want %d", len(members), voters, want)
		}
		return nil
	}
	allCPsBack := func(ctx context.Context, cs kubernetes.Interface, booted time.Time, names ...string) error {
		for _, n := range names {
			if err := controlPlaneBack(ctx, cs, n, booted, nodes[n].HostPath("/etc/kubernetes/manifests")); err != nil {
				return err
			}
		}
		return nil
	}

	step(t, "ThreeControlPlanes", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "all four nodes Ready", func(ctx context.Context) error {
			return framework.NodesReady(ctx, cs, "ha1", "ha2", "ha3", workerName)
		})
		wait(ctx, t, 3*time.Minute, "an apiserver, etcd and checkpointer on each control-plane node", func(ctx context.Context) error {
			if err := allCPsBack(ctx, cs, time.Time{}, "ha1", "ha2", "ha3"); err != nil {
				return err
			}
			return framework.PodsReady(ctx, cs, metav1.NamespaceSystem, "app.kubernetes.io/name=selfkube-checkpointer", 3)
		})
		wait(ctx, t, time.Minute, "a three-member etcd", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 3) })
		for _, n := range cps {
			if err := framework.Readyz(ctx, clientAt(t, n.ip)); err != nil {
				t.Errorf("the apiserver of %s (its certificate, its readiness): %v", n.name, err)
			}
		}
		for _, c := range []string{"kube-controller-manager", "kube-scheduler"} {
			wait(ctx, t, 2*time.Minute, c+" spread over two control-plane nodes", func(ctx context.Context) error {
				pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "component=" + c})
				if err != nil {
					return err
				}
				on := map[string]bool{}
				for _, p := range pods.Items {
					if framework.PodReady(&p) {
						on[p.Spec.NodeName] = true
					}
				}
				if len(on) < 2 {
					return fmt.Errorf("Ready %s pods run on %v", c, keys(on))
				}
				return nil
			})
		}
	})

	step(t, "EveryAPIServerListsEveryEtcdMember", func(t *testing.T) {
		// Each join made the operator roll the apiservers (no drift to adopt): each lists
		// every member, so that it serves while its own member restarts.
		wait(ctx, t, 6*time.Minute, "every apiserver listing the three etcd members", func(ctx context.Context) error {
			return apiServerRolledOut(ctx, cs, 3, listsEtcdMembers(cps[0].ip, cps[1].ip, cps[2].ip))
		})
		cpc.settled(t, 1, "the operator done with the joins")
	})

	// The honest prober's identities, at ha1 (an RBAC user and its keep-alive client, a
	// ServiceAccount, ha1's kubelet), and the RBAC user at ha2 and ha3. Four nodes on the
	// test machine: 4 requests/s per target (20 new TLS connections a second in all, a
	// third of the one-node tests'); at 20/s each the handshakes alone saturated two cores
	// and every server timed out alike, before any change.
	targets := availabilityTargets(ctx, t, cs, first, "https://"+cps[0].ip+":6443")
	for _, n := range cps[1:] {
		targets = append(targets, atServer(targets[0], "https://"+n.ip+":6443", n.name))
	}
	opts := probe.Options{Rate: 4, KeepAliveRate: 2}
	// During the roll-outs, also the RBAC user and the worker's kubelet through the
	// worker's node-local api-proxy, from inside the worker (it listens on its loopback):
	// the path of every worker's kubelet and kube-proxy. 3 requests/s per target keeps
	// the handshakes near 20 a second.
	rolloutTargets := slices.Clone(targets)
	rolloutOpts := probe.Options{Rate: 3, KeepAliveRate: 2}
	viaWorkerProxy := func(t *testing.T, tg probe.Target) probe.Target {
		t.Helper()
		tg = atServer(tg, fmt.Sprintf("https://127.0.0.1:%d", manifests.APIProxyPort), workerName+"'s api-proxy")
		tg.Config.Dial = nodes[workerName].DialContext
		return tg
	}

	step(t, "APIServerFlagRollsOutOnThreeNodes", func(t *testing.T) {
		workerKubelet, err := kubeletTarget(nodes[workerName], "https://"+cps[0].ip+":6443")
		if err != nil {
			t.Fatal(err)
		}
		rolloutTargets = append(rolloutTargets, viaWorkerProxy(t, targets[0]), viaWorkerProxy(t, workerKubelet))
		const flag = "--max-requests-inflight=402"
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "apiserver-flag-three-nodes", rolloutTargets, func() {
			addAPIServerFlag(ctx, t, cs, flag)
			wait(ctx, t, 6*time.Minute, "the new apiserver pods to replace the old ones on all three nodes", func(ctx context.Context) error {
				return apiServerRolledOut(ctx, cs, 3, withFlag(flag))
			})
		})
		// Clean-clone CI, run 2 of 2 at the same commit: ha1's new apiserver, already
		// the only one getting new connections, stalled ~5 s when the old one exited
		// and every client of the cluster moved to it (all identities and the
		// keep-alive timed out alike, and the steer's own probe too): four nodes on
		// two cores. No request reached the wrong apiserver. That stall is asserted
		// away here only as a timeout; every other failure fails the test.
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
	})

	step(t, "APIServerImageRollsOutOnThreeNodes", func(t *testing.T) {
		image := apiServerImage(ctx, t, cs)
		next := image + "-e2e-rollout"
		tagImage(ctx, t, image, next, nodes["ha1"], nodes["ha2"], nodes["ha3"])
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "apiserver-image-three-nodes", rolloutTargets, func() {
			changeAPIServer(ctx, t, cs, func(c *corev1.Container) { c.Image = next })
			wait(ctx, t, 6*time.Minute, "the apiserver pods of the new image to replace the old ones on all three nodes", func(ctx context.Context) error {
				return apiServerRolledOut(ctx, cs, 3, withImage(next))
			})
		})
		// As the flag change above: a timeout is logged, any other failure fails.
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
	})

	step(t, "FlagChangedThroughTheResourceOnThreeNodes", func(t *testing.T) {
		// The operator's leader is killed (no grace: its lease is not handed back) while
		// the apiservers roll; the other replica takes the lease and finishes the roll-out
		// from the resource's status.
		const flag = "--max-requests-inflight=404"
		var gen int64
		var killed string
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "controlplane-flag-three-nodes", rolloutTargets, func() {
			gen = cpc.patch(t, `{"spec":{"apiServer":{"extraArgs":{"max-requests-inflight":"404"}}}}`)
			wait(ctx, t, 2*time.Minute, "the operator to begin the roll-out", func(ctx context.Context) error {
				cp, err := cpc.get(ctx)
				if err != nil {
					return err
				}
				if cp.Status.Rollout == nil || cp.Status.Rollout.Generation != gen {
					return fmt.Errorf("no roll-out of generation %d yet", gen)
				}
				return nil
			})
			killed = killOperatorLeader(ctx, t, cs)
			cpc.settled(t, gen, "the flag change rolled out on three nodes")
		})
		// Through the worker's api-proxy too (what every worker's kubelet and kube-proxy
		// use), a timeout is logged, not failed: clean-clone CI on 2026-12-06 lost 1 of
		// 181 through it at 2.001 s while the direct targets' p99 was 1.5 to 1.6 s (four
		// nodes on two cores, docs/no-api-gap.md). TestLongHAUpgrade keeps the strict check.
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		if err := apiServerRolledOut(ctx, cs, 3, withFlag(flag)); err != nil {
			t.Errorf("after the roll-out: %v", err)
		}
		if holder := operatorLeader(ctx, t, cs); holder == killed {
			t.Errorf("the killed replica %s still leads", killed)
		}
	})

	step(t, "UnknownFlagRolledBackOnThreeNodes", func(t *testing.T) {
		var gen int64
		var cp *controlplane.ControlPlane
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "controlplane-bad-flag-three-nodes", rolloutTargets, func() {
			gen = cpc.patch(t, `{"spec":{"apiServer":{"extraArgs":{"no-such-flag":"1"}}}}`)
			cp = cpc.settled(t, gen, "the bad flag rolled back on three nodes")
		})
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		if cp.Status.RolledBack == nil || cp.Status.RolledBack.Generation != gen || cp.Status.LastKnownGood.Generation >= gen {
			t.Errorf("status: rolled back %+v, last-known-good %+v", cp.Status.RolledBack, cp.Status.LastKnownGood)
		}
		if err := apiServerRolledOut(ctx, cs, 3, withFlag("--max-requests-inflight=404")); err != nil {
			t.Errorf("after the rollback: %v", err)
		}
	})

	step(t, "EtcdFlagRolledMemberByMemberOnThreeNodes", func(t *testing.T) {
		// The held bad flag goes, an etcd flag comes: a snapshot first, then each node's
		// agent restarts its member in turn; the API and etcd's quorum stay throughout.
		var endpoints []string
		for _, c := range cps {
			endpoints = append(endpoints, "https://"+c.ip+":2379")
		}
		quorum := watchQuorum(ctx, t, first.HostPath("/etc/kubernetes/pki/etcd"), endpoints)
		var gen int64
		var cp *controlplane.ControlPlane
		start := time.Now()
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "controlplane-etcd-flag-three-nodes", rolloutTargets, func() {
			gen = cpc.patch(t, `{"spec":{"apiServer":{"extraArgs":{"no-such-flag":null}},"etcd":{"extraArgs":{"snapshot-count":"5000"}}}}`)
			cp = cpc.settled(t, gen, "the etcd flag rolled out member by member")
		})
		seen := quorum.finish()
		t.Logf("etcd flag on three members: rolled out %.1f s after the change; quorum: %s", time.Since(start).Seconds(), seen)
		// Every apiserver lists every member, so the one whose member restarts keeps
		// serving: as the roll-outs above, a timeout is logged, any other failure fails.
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		if quorum.fewest < 2 || quorum.samples < 10 {
			t.Errorf("etcd's quorum was not kept throughout (or hardly sampled): %s", seen)
		}
		if len(quorum.down) == 0 {
			t.Errorf("no member was ever seen restarting: was etcd changed at all? %s", seen)
		}
		for _, c := range cps {
			if err := etcdRuns(nodes[c.name], "--snapshot-count=5000"); err != nil {
				t.Errorf("node %s: %v", c.name, err)
			}
		}
		checkSnapshot(t, cp, gen, nodes)
		// Each member was done only with its agent's passing check of it: endpoint
		// health, and three started, voting members in its list.
		for _, c := range cps {
			var ch controlplane.EtcdCheck
			if cp.Status.Etcd != nil {
				ch = cp.Status.Etcd.Checks[c.name]
			}
			if ch.Generation != gen || ch.Target != controlplane.TargetSpec || !ch.Healthy || ch.Members != 3 {
				t.Errorf("the check of %s's member: %+v; want a passing one of generation %d with 3 members", c.name, ch, gen)
			}
		}
	})

	step(t, "EtcdVersionUpgradedMemberByMemberOnThreeNodes", func(t *testing.T) {
		// etcd.version is the members' image: each node's agent restarts its member on
		// the new release in turn, with the same checks as a flag change.
		var endpoints []string
		for _, c := range cps {
			endpoints = append(endpoints, "https://"+c.ip+":2379")
		}
		quorum := watchQuorum(ctx, t, first.HostPath("/etc/kubernetes/pki/etcd"), endpoints)
		var gen int64
		start := time.Now()
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "controlplane-etcd-version-three-nodes", rolloutTargets, func() {
			gen = cpc.patch(t, `{"spec":{"etcd":{"version":"`+etcdUpgradeTo+`"}}}`)
			cpc.settled(t, gen, "etcd "+etcdUpgradeTo+" rolled out member by member")
		})
		seen := quorum.finish()
		t.Logf("etcd %s on three members: rolled out %.1f s after the change; quorum: %s", etcdUpgradeTo, time.Since(start).Seconds(), seen)
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		if quorum.fewest < 2 || quorum.samples < 10 || len(quorum.down) == 0 {
			t.Errorf("etcd's quorum was not kept throughout, or no member restarted: %s", seen)
		}
		image := "image: registry.local/etcd:" + strings.TrimPrefix(etcdUpgradeTo, "v") + "-0\n"
		for _, c := range cps {
			data, err := os.ReadFile(nodes[c.name].HostPath("/etc/kubernetes/manifests/etcd.yaml"))
			if err != nil || !strings.Contains(string(data), image) {
				t.Errorf("node %s's etcd static pod does not run %s (%v)", c.name, strings.TrimSpace(image), err)
			}
			if err := etcdRuns(nodes[c.name], "--snapshot-count=5000"); err != nil {
				t.Errorf("node %s lost the earlier flag in the version change: %v", c.name, err)
			}
		}
		wait(ctx, t, time.Minute, "a three-member etcd", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 3) })
		// What runs, not only what is written: every member's mirror pod on the image.
		for _, c := range cps {
			p, err := cs.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, "etcd-"+c.name, metav1.GetOptions{})
			if err != nil || !strings.HasSuffix(p.Spec.Containers[0].Image, ":"+strings.TrimPrefix(etcdUpgradeTo, "v")+"-0") || !framework.PodReady(p) {
				t.Errorf("etcd's mirror pod on %s (%v): want it on %s, Ready", c.name, err, etcdUpgradeTo)
			}
		}
	})

	step(t, "AllControlPlanesRebootedAtOnce", func(t *testing.T) {
		// A boot takes a fifth of a second: one after the other, they are at once.
		prober, booted := rebootProbed(ctx, t, opts, targets, nodes["ha1"], nodes["ha2"], nodes["ha3"])
		defer prober.Stop()
		readyz := since(ctx, t, booted, 3*time.Minute, "apiserver /readyz", func(ctx context.Context) error { return framework.Readyz(ctx, cs) })
		back := since(ctx, t, booted, 5*time.Minute, "all three control planes reconverged", func(ctx context.Context) error {
			return allCPsBack(ctx, cs, booted.Add(-time.Second), "ha1", "ha2", "ha3")
		})
		wait(ctx, t, time.Minute, "a three-member etcd", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 3) })
		rep := prober.Stop()
		t.Logf("all three control-plane nodes rebooted: /readyz after %.1f s, reconverged after %.1f s; first 2xx after the boot: %s",
			readyz.Seconds(), back.Seconds(), firstAnswers(rep, booted))
		// Four nodes booting at once on the test machine's two cores: the slowest answers
		// took 1.997 s locally, at the limit; as in the roll-out above, a timeout is
		// logged, and any refused, denied (403), reset or cut-off request fails.
		t.Logf("availability during all three control-plane nodes rebooted at once:\n%s", rep.Table())
		requireOnlySlowAnswers(t, rep)
	})

	step(t, "FirstControlPlaneDown", func(t *testing.T) {
		other := clientAt(t, cps[1].ip)
		// The identities at ha2, the worker's kubelet among them.
		at := "https://" + cps[1].ip + ":6443"
		var survivors []probe.Target
		for _, tg := range targets {
			switch {
			case tg.Config.Host != targets[0].Config.Host:
				continue // the RBAC user at ha2 and ha3: at ha2 below
			case tg.Name == "kubelet":
				kubelet, err := kubeletTarget(nodes[workerName], at)
				if err != nil {
					t.Fatal(err)
				}
				survivors = append(survivors, kubelet)
			default:
				survivors = append(survivors, atServer(tg, at, cps[1].name))
			}
		}
		prober, err := probe.Start(ctx, opts, survivors...)
		if err != nil {
			t.Fatal(err)
		}
		defer prober.Stop()
		if err := first.PowerOff(); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, time.Minute, "etcd with two of three members", func(ctx context.Context) error {
			if err := etcdHealthy(ctx, cps[1].ip, 3); err != nil {
				return err
			}
			return framework.Readyz(ctx, other)
		})
		// The scheduler avoids a node only once the node controller marked it NotReady.
		wait(ctx, t, 3*time.Minute, "ha1 marked NotReady", func(ctx context.Context) error {
			n, err := other.CoreV1().Nodes().Get(ctx, "ha1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if framework.NodeReady(n) {
				return fmt.Errorf("ha1 still counts as Ready")
			}
			return nil
		})
		// The worker's kubelet reaches a surviving apiserver through its node-local proxy.
		if err := framework.NodesReady(ctx, other, "ha2", "ha3", workerName); err != nil {
			t.Errorf("with ha1 down: %v", err)
		}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "after-failover", Namespace: metav1.NamespaceDefault},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "after-failover"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "after-failover"}},
					Spec: corev1.PodSpec{
						Tolerations:                   []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists}},
						TerminationGracePeriodSeconds: new(int64),
						Containers:                    []corev1.Container{webContainer()},
					},
				},
			},
		}
		if _, err := other.AppsV1().Deployments(metav1.NamespaceDefault).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "the new Deployment's pods running on the remaining nodes", func(ctx context.Context) error {
			pods, err := other.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "app=after-failover"})
			if err != nil {
				return err
			}
			running := 0
			for _, p := range pods.Items {
				if p.Spec.NodeName == "ha1" {
					return fmt.Errorf("pod %s was scheduled on the powered-off node", p.Name)
				}
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			if running < 2 {
				return fmt.Errorf("%d of 2 pods running", running)
			}
			return nil
		})
		// A Service made now reaches the worker's Service rules only if the worker's
		// kube-proxy still has an API: it goes through its pod's api-proxy.
		svc, err := other.CoreV1().Services(metav1.NamespaceDefault).Create(ctx, webServiceFor("after-failover"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := probePod(ctx, t, other, workerName, fmt.Sprintf(
			"for i in $(seq 90); do timeout 2 wget -q -O- http://%s/ && exit 0; sleep 1; done; exit 1", svc.Spec.ClusterIP))
		if err != nil {
			t.Errorf("a Service created while ha1 was off never answered on the worker (its kube-proxy lost the API?): %v\n%s", err, out)
		}
		if err := framework.NodesReady(ctx, other, workerName); err != nil {
			t.Errorf("the worker did not stay Ready: %v", err)
		}
		requireNoLoss(t, fmt.Sprintf("%s powered off, requests to %s", cps[0].name, cps[1].name), prober.Stop())
	})

	step(t, "FirstControlPlaneRejoins", func(t *testing.T) {
		if err := first.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		booted, err := first.KubeletStarted()
		if err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "ha1 back with its control plane", func(ctx context.Context) error {
			if err := framework.NodesReady(ctx, cs, "ha1"); err != nil {
				return err
			}
			return allCPsBack(ctx, cs, booted.Add(-time.Second), "ha1")
		})
		wait(ctx, t, time.Minute, "etcd three healthy members again", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 3) })
	})

	step(t, "ResetLeavesEtcd", func(t *testing.T) {
		// Clients of the other apiservers lose nothing: ha3's member stops before it is
		// removed, so none of them is answered "raft: stopped" by a removed member that
		// still runs. Probed at ha1 and ha2 only (ha3's apiserver goes).
		var staying []probe.Target
		for _, tg := range rolloutTargets {
			if !strings.Contains(tg.Name, "ha3") {
				staying = append(staying, tg)
			}
		}
		n := nodes["ha3"]
		var out string
		rep, informed := measureAvailabilityWith(ctx, t, cs, rolloutOpts, "reset-of-a-control-plane-node", staying, func() {
			var err error
			if out, err = n.Exec(ctx, bin, "reset", "--force"); err != nil {
				t.Fatalf("reset of ha3: %v\n%s", err, out)
			}
		})
		requireOnlySlowAnswers(t, rep)
		if err := informed.Err(); err != nil {
			t.Errorf("the informer: %v", err)
		}
		for _, f := range informed.WriteFailures {
			if f.Kind != probe.KindTimeout {
				t.Errorf("a ConfigMap create failed during the reset: %s", f)
			}
		}
		if !strings.Contains(out, "removed etcd member ha3") || !strings.Contains(out, "stopped this node's etcd member") {
			t.Errorf("reset did not say it stopped and removed the etcd member:\n%s", out)
		}
		wait(ctx, t, time.Minute, "etcd with two members", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 2) })
		if _, err := os.Stat(filepath.Join(n.HostPath("/etc/kubernetes/pki"))); !os.IsNotExist(err) {
			t.Errorf("reset left /etc/kubernetes/pki: %v", err)
		}
	})

	// ha3 left etcd; now ha2 and ha3 are powered off for good: two of the three
	// control-plane nodes are gone and etcd (ha1, ha2) has lost its quorum. recover
	// --force-new-cluster on ha1 makes its member the only one, with all its data; then a
	// new control-plane node joins.
	step(t, "QuorumLostForGoodRecoveredOnTheSurvivor", func(t *testing.T) {
		marker := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-quorum-loss", Namespace: metav1.NamespaceDefault},
			Data: map[string]string{"kept": "yes"}}
		if _, err := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, marker, metav1.CreateOptions{}); ensureCreated(err) != nil {
			t.Fatal(err)
		}
		before, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The hard case for the survivor: it runs no controller manager and no scheduler
		// replica (which node the replicas land on is otherwise chance), so it has no
		// checkpoint of either, and the data still shows the lost nodes' replicas Ready.
		noReplicaOn(ctx, t, cs, first.Name)
		for _, n := range []string{"ha3", "ha2"} {
			if err := nodes[n].PowerOff(); err != nil {
				t.Fatal(err)
			}
		}
		wait(ctx, t, time.Minute, "etcd without a leader", func(ctx context.Context) error {
			if etcdHealthy(ctx, cps[0].ip, 2) == nil {
				return fmt.Errorf("etcd still healthy")
			}
			return nil
		})
		out, err := first.Exec(ctx, bin, "recover", "--force-new-cluster", "--dry-run")
		if err != nil || !strings.Contains(out, "--force-new-cluster: member ha1 becomes the only member") {
			t.Errorf("recover --force-new-cluster --dry-run: %v\n%s", err, out)
		}
		start := time.Now()
		out, err = first.Exec(ctx, bin, "recover", "--force-new-cluster")
		t.Logf("selfkube recover --force-new-cluster (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "The control-plane nodes ha2") {
			t.Errorf("recover does not name ha2 as a node to join again")
		}
		for _, c := range []string{"kube-controller-manager", "kube-scheduler"} {
			if !strings.Contains(out, "activated a stand-in for "+c) {
				t.Errorf("recover does not say it stood in for %s, which ran only on the lost nodes", c)
			}
		}
		wait(ctx, t, 2*time.Minute, "Ready controller-manager and scheduler replicas on "+first.Name, func(ctx context.Context) error {
			return replicasOn(ctx, cs, first.Name, true)
		})
		wait(ctx, t, time.Minute, "etcd with one member", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 1) })
		got, err := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, marker.Name, metav1.GetOptions{})
		if err != nil || got.Data["kept"] != "yes" {
			t.Fatalf("the ConfigMap written before the loss: %v %v", got, err)
		}
		after, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ConfigMaps before the quorum loss: %d, after recover --force-new-cluster: %d", len(before.Items), len(after.Items))
		if len(after.Items) < len(before.Items) {
			t.Errorf("%d ConfigMaps after the recovery, %d before", len(after.Items), len(before.Items))
		}
		if aside := setAside(first); len(aside) != 1 {
			t.Errorf("the copy of etcd's data set aside: %v, want one", aside)
		}

		// A new control-plane node joins the recovered cluster.
		ha4, err := h.UpWith(ctx, "ha4", "172.31.0.45", framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
		if err != nil {
			t.Fatal(err)
		}
		out, err = first.Exec(ctx, bin, "token", "create", "--control-plane", "--print-join-command")
		if err != nil {
			t.Fatalf("token create --control-plane: %v\n%s", err, out)
		}
		join := strings.Fields(strings.TrimSpace(out))
		if out, err := ha4.Exec(ctx, append([]string{bin}, join[1:]...)...); err != nil {
			t.Fatalf("join --control-plane of ha4 after the recovery: %v\n%s", err, out)
		}
		wait(ctx, t, 2*time.Minute, "etcd with two healthy members", func(ctx context.Context) error { return etcdHealthy(ctx, cps[0].ip, 2) })
		wait(ctx, t, 3*time.Minute, "ha4 Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, "ha4") })
	})
}

// listsEtcdMembers says whether an apiserver container lists the etcd member of every
// address in ips in --etcd-servers.
func listsEtcdMembers(ips ...string) func(corev1.Container) bool {
	return func(c corev1.Container) bool {
		for _, arg := range c.Command {
			if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
				for _, ip := range ips {
					if !slices.Contains(strings.Split(v, ","), etcd.ClientURL(ip)) {
						return false
					}
				}
				return true
			}
		}
		return false
	}
}

// haControlPlanes and haWorker are the nodes of the three-control-plane scenarios
// (TestHA and the bench's three-node variant); ha1 is the one init runs on.
var haControlPlanes = []struct{ name, ip string }{{"ha1", "172.31.0.41"}, {"ha2", "172.31.0.42"}, {"ha3", "172.31.0.43"}}

const workerName, workerIP = "hw", "172.31.0.44"

// upHANodes brings up the three control-plane nodes and the worker (no cluster yet) and
// writes init's config on ha1, which it returns as first.
func upHANodes(ctx context.Context, t *testing.T, h *framework.Harness, bin string) (map[string]*framework.Node, *framework.Node) {
	return upHANodesAt(ctx, t, h, bin, "")
}

// upHANodesAt is upHANodes at Kubernetes version (kubelets and init's config; "" is the
// pinned release).
func upHANodesAt(ctx context.Context, t *testing.T, h *framework.Harness, bin, version string) (map[string]*framework.Node, *framework.Node) {
	t.Helper()
	nodes := map[string]*framework.Node{}
	for _, n := range append(haControlPlanes, struct{ name, ip string }{workerName, workerIP}) {
		node, err := h.UpWith(ctx, n.name, n.ip, framework.UpOptions{NoPodNetwork: true, Selfkube: bin, KubeletVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.name] = node
	}
	first := nodes[haControlPlanes[0].name]
	config := selfkubeConfig(haControlPlanes[0].name, haControlPlanes[0].ip)
	if version != "" {
		config = upgradeConfig(haControlPlanes[0].name, haControlPlanes[0].ip, version)
	}
	if err := os.WriteFile(first.HostPath("/etc/kubernetes/selfkube.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return nodes, first
}

// haCluster is a three-control-plane cluster and a worker, made by init and joins.
type haCluster struct {
	nodes   map[string]*framework.Node
	first   *framework.Node
	cfg     *rest.Config // the admin's, at ha1
	cs      kubernetes.Interface
	cpc     *controlPlaneClient
	initOut string
}

// upHACluster makes an haCluster at version (upHANodesAt) and waits until every node is
// Ready, each control-plane node runs its control plane, every apiserver lists the three
// etcd members, and the operator recorded it all as good.
func upHACluster(ctx context.Context, t *testing.T, h *framework.Harness, bin, version string) haCluster {
	t.Helper()
	cps := haControlPlanes
	c := haCluster{}
	c.nodes, c.first = upHANodesAt(ctx, t, h, bin, version)
	var err error
	if c.initOut, err = c.first.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml"); err != nil {
		t.Fatalf("selfkube init: %v\n%s", err, c.initOut)
	}
	server := "https://" + cps[0].ip + ":6443"
	if c.cfg, err = framework.RestConfig(c.first.HostPath("/etc/kubernetes/admin.conf"), server); err != nil {
		t.Fatal(err)
	}
	if c.cs, err = kubernetes.NewForConfig(c.cfg); err != nil {
		t.Fatal(err)
	}
	for _, n := range cps[1:] {
		out, err := c.first.Exec(ctx, bin, "token", "create", "--control-plane", "--print-join-command")
		if err != nil {
			t.Fatalf("token create --control-plane: %v\n%s", err, out)
		}
		if out, err := c.nodes[n.name].Exec(ctx, append([]string{bin}, strings.Fields(strings.TrimSpace(out))[1:]...)...); err != nil {
			t.Fatalf("join --control-plane of %s: %v\n%s", n.name, err, out)
		}
	}
	if out, err := c.nodes[workerName].Exec(ctx, append([]string{bin}, joinCommandArgs(t, c.initOut)...)...); err != nil {
		t.Fatalf("join of the worker: %v\n%s", err, out)
	}
	wait(ctx, t, 5*time.Minute, "four nodes Ready and the control plane on each control-plane node", func(ctx context.Context) error {
		if err := framework.NodesReady(ctx, c.cs, "ha1", "ha2", "ha3", workerName); err != nil {
			return err
		}
		for _, n := range cps {
			if err := controlPlaneBack(ctx, c.cs, n.name, time.Time{}, c.nodes[n.name].HostPath("/etc/kubernetes/manifests")); err != nil {
				return err
			}
		}
		return nil
	})
	wait(ctx, t, 6*time.Minute, "every apiserver listing the three etcd members", func(ctx context.Context) error {
		return apiServerRolledOut(ctx, c.cs, 3, listsEtcdMembers(cps[0].ip, cps[1].ip, cps[2].ip))
	})
	c.cpc = newControlPlaneClient(ctx, t, c.cfg)
	c.cpc.settled(t, 1, "the operator to record the three-node control plane as good")
	return c
}

// haTargets are the honest prober's targets on an haCluster: every identity at ha1, the
// RBAC user at ha2 and ha3, and the RBAC user and the worker's kubelet through the
// worker's node-local api-proxy (from inside the worker), with the options for four
// nodes on two cores (fewer requests per target).
func haTargets(ctx context.Context, t *testing.T, c haCluster) ([]probe.Target, probe.Options) {
	t.Helper()
	cps := haControlPlanes
	server := "https://" + cps[0].ip + ":6443"
	targets := availabilityTargets(ctx, t, c.cs, c.first, server)
	for _, n := range cps[1:] {
		targets = append(targets, atServer(targets[0], "https://"+n.ip+":6443", n.name))
	}
	workerKubelet, err := kubeletTarget(c.nodes[workerName], server)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []probe.Target{targets[0], workerKubelet} {
		tg = atServer(tg, fmt.Sprintf("https://127.0.0.1:%d", manifests.APIProxyPort), workerName+"'s api-proxy")
		tg.Config.Dial = c.nodes[workerName].DialContext
		targets = append(targets, tg)
	}
	return targets, probe.Options{Rate: 3, KeepAliveRate: 2}
}

// noReplicaOn moves the controller manager's and scheduler's replicas off node: it
// cordons node, deletes the replicas there, waits until none runs there and each
// component is Ready elsewhere, and uncordons node again.
func noReplicaOn(ctx context.Context, t *testing.T, cs kubernetes.Interface, nodeName string) {
	t.Helper()
	cordon := func(on bool) {
		patch := []byte(fmt.Sprintf(`{"spec":{"unschedulable":%v}}`, on))
		if _, err := cs.CoreV1().Nodes().Patch(ctx, nodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cordon(true)
	defer cordon(false)
	for _, component := range []string{"kube-controller-manager", "kube-scheduler"} {
		pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + component})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != nodeName {
				continue
			}
			t.Logf("moving %s off %s", p.Name, nodeName)
			if err := cs.CoreV1().Pods(metav1.NamespaceSystem).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
	}
	wait(ctx, t, 2*time.Minute, "controller-manager and scheduler replicas Ready, none on "+nodeName, func(ctx context.Context) error {
		return replicasOn(ctx, cs, nodeName, false)
	})
}

// replicasOn checks that the controller manager and the scheduler each have a Ready
// replica on node (here) or, with here false, one Ready elsewhere and none on node.
func replicasOn(ctx context.Context, cs kubernetes.Interface, nodeName string, here bool) error {
	for _, component := range []string{"kube-controller-manager", "kube-scheduler"} {
		pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + component})
		if err != nil {
			return err
		}
		readyHere, readyElsewhere, onNode := false, false, false
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName == nodeName {
				onNode = true
				readyHere = readyHere || node.PodReady(p)
			} else {
				readyElsewhere = readyElsewhere || node.PodReady(p)
			}
		}
		switch {
		case here && !readyHere:
			return fmt.Errorf("no Ready %s replica on %s", component, nodeName)
		case !here && onNode:
			return fmt.Errorf("a %s replica is still on %s", component, nodeName)
		case !here && !readyElsewhere:
			return fmt.Errorf("no Ready %s replica on another node", component)
		}
	}
	return nil
}
