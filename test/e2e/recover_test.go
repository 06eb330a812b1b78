//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// recoverConfig is selfkubeConfig with scheduled etcd snapshots every minute, two kept.
func recoverConfig(name, ip string) string {
	return strings.Replace(selfkubeConfig(name, ip), "imageRepository: registry.local\n",
		"imageRepository: registry.local\netcd:\n  local:\n    snapshots:\n      interval: 1m\n      keep: 2\n", 1)
}

// recoverObjects is what the recovery scenarios must keep: configMaps ConfigMaps, a
// Secret and a Deployment of three replicas in their own namespace.
const (
	recoverNamespace  = "recover-data"
	recoverConfigMaps = 1000
)

func createRecoverObjects(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	createConfigMaps(ctx, t, cs, 0, recoverConfigMaps)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "precious", Namespace: recoverNamespace},
		Data: map[string][]byte{"password": []byte("correct horse battery staple")}}
	if _, err := cs.CoreV1().Secrets(recoverNamespace).Create(ctx, secret, metav1.CreateOptions{}); ensureCreated(err) != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "recover-web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: recoverNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{webContainer()}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(recoverNamespace).Create(ctx, d, metav1.CreateOptions{}); ensureCreated(err) != nil {
		t.Fatal(err)
	}
}

// createConfigMaps creates the ConfigMaps cm-<from> to cm-<to - 1> (and their namespace),
// 16 at a time.
func createConfigMaps(ctx context.Context, t *testing.T, cs kubernetes.Interface, from, to int) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: recoverNamespace}}, metav1.CreateOptions{}); ensureCreated(err) != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, to-from)
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := cs.CoreV1().ConfigMaps(recoverNamespace).Create(ctx, configMap(i), metav1.CreateOptions{}); ensureCreated(err) != nil {
					errs <- err
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// configMap is ConfigMap number i: its index and half a kilobyte that depends on it.
func configMap(i int) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Namespace: recoverNamespace},
		Data: map[string]string{"index": fmt.Sprint(i), "payload": strings.Repeat(fmt.Sprint(i%10), 512)}}
}

// countConfigMaps counts the ConfigMaps createConfigMaps made that are there with their
// content, and fails on one whose content differs.
func countConfigMaps(ctx context.Context, cs kubernetes.Interface) (int, error) {
	n := 0
	opts := metav1.ListOptions{Limit: 2000}
	for {
		cms, err := cs.CoreV1().ConfigMaps(recoverNamespace).List(ctx, opts)
		if err != nil {
			return n, err
		}
		for _, cm := range cms.Items {
			var i int
			if _, err := fmt.Sscanf(cm.Name, "cm-%05d", &i); err != nil {
				continue
			}
			if want := configMap(i).Data; cm.Data["index"] != want["index"] || cm.Data["payload"] != want["payload"] {
				return n, fmt.Errorf("ConfigMap %s has other content: %v", cm.Name, cm.Data["index"])
			}
			n++
		}
		if opts.Continue = cms.Continue; opts.Continue == "" {
			return n, nil
		}
	}
}

// checkRecoverObjects checks once that every object createRecoverObjects made is there
// with its content and the Deployment has three Ready replicas; it returns the number
// of ConfigMaps found.
func checkRecoverObjects(ctx context.Context, cs kubernetes.Interface) (int, error) {
	n, err := countConfigMaps(ctx, cs)
	if err != nil {
		return n, err
	}
	if n != recoverConfigMaps {
		return n, fmt.Errorf("%d of %d ConfigMaps", n, recoverConfigMaps)
	}
	s, err := cs.CoreV1().Secrets(recoverNamespace).Get(ctx, "precious", metav1.GetOptions{})
	if err != nil {
		return n, err
	}
	if string(s.Data["password"]) != "correct horse battery staple" {
		return n, fmt.Errorf("the Secret holds %q", s.Data["password"])
	}
	d, err := cs.AppsV1().Deployments(recoverNamespace).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return n, err
	}
	if d.Status.ReadyReplicas != 3 || d.Status.ObservedGeneration != d.Generation {
		return n, fmt.Errorf("the Deployment has %d Ready replicas", d.Status.ReadyReplicas)
	}
	return n, nil
}

// TestRecover loses a self-hosted control plane in the ways issue 17 names and brings it
// back with `selfkube recover` on one control-plane node with a worker: its workloads
// deleted through the API (the checkpoints stand in meanwhile; recover creates them
// again), then etcd's data wiped and the node rebooted (recover --from-snapshot). Every
// object is there after each, with its content; the Deployment runs, the worker is Ready,
// a new node joins; scheduled snapshots appear at their interval and are pruned.
func TestRecover(t *testing.T) {
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	const cpName, cpIP, wName, wIP, jName, jIP = "rc1", "172.31.0.71", "rcw", "172.31.0.72", "rcj", "172.31.0.73"
	opts := framework.UpOptions{NoPodNetwork: true, Selfkube: bin}
	cp, err := h.UpWith(ctx, cpName, cpIP, opts)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := h.UpWith(ctx, wName, wIP, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := "/etc/kubernetes/selfkube.yaml"
	if err := os.WriteFile(cp.HostPath(cfgFile), []byte(recoverConfig(cpName, cpIP)), 0o600); err != nil {
		t.Fatal(err)
	}
	step(t, "InitAndJoin", func(t *testing.T) {
		out, err := cp.Exec(ctx, bin, "init", "--config", cfgFile)
		if err != nil {
			t.Fatalf("selfkube init: %v\n%s", err, out)
		}
		if out, err := worker.Exec(ctx, append([]string{bin}, joinCommandArgs(t, out)...)...); err != nil {
			t.Fatalf("join of the worker: %v\n%s", err, out)
		}
	})
	_, adminCfg, cs := adminOf(t, cp, cpIP)
	adminCfg.QPS, adminCfg.Burst = 200, 400
	fast, err := kubernetes.NewForConfig(adminCfg)
	if err != nil {
		t.Fatal(err)
	}
	cpc := newControlPlaneClient(ctx, t, adminCfg)
	nodes := []string{cpName, wName}
	var firstScheduled time.Time
	step(t, "Objects", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "both nodes Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, nodes...) })
		start := time.Now()
		createRecoverObjects(ctx, t, fast)
		t.Logf("created %d ConfigMaps, a Secret and a Deployment in %s", recoverConfigMaps, time.Since(start).Round(time.Millisecond))
		wait(ctx, t, 3*time.Minute, "the objects and three Ready replicas", func(ctx context.Context) error {
			_, err := checkRecoverObjects(ctx, cs)
			return err
		})
		wait(ctx, t, 2*time.Minute, "a scheduled snapshot in the ControlPlane's status", func(ctx context.Context) error {
			cp, err := cpc.get(ctx)
			if err != nil {
				return err
			}
			if cp.Status.Etcd == nil || cp.Status.Etcd.Scheduled[cpName].Path == "" {
				return fmt.Errorf("status.etcd.scheduled has no snapshot of %s", cpName)
			}
			firstScheduled = cp.Status.Etcd.Scheduled[cpName].Time.Time
			return nil
		})
	})

	step(t, "KubeletServingCertificates", func(t *testing.T) { checkKubeletServing(ctx, t, cs, cp, worker, cpIP, wIP) })
	step(t, "CertsCheckExpiration", func(t *testing.T) { checkCertsListed(ctx, t, cs, cp, bin) })
	step(t, "CertsRenew", func(t *testing.T) { checkCertsRenew(ctx, t, cs, cp, worker, cpIP, bin) })

	snapshot := "/var/lib/selfkube/backup/cluster.db"
	step(t, "SnapshotSave", func(t *testing.T) {
		start := time.Now()
		out, err := cp.Exec(ctx, bin, "etcd", "snapshot", "save", snapshot)
		t.Logf("selfkube etcd snapshot save (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"✓ snapshot of etcd member " + cpName, snapshot + ": revision ", "checksum ok"} {
			if !strings.Contains(out, want) {
				t.Errorf("snapshot save does not say %q", want)
			}
		}
		checkPrivateDirs(t, cp, filepath.Dir(snapshot))
		if fi, err := os.Stat(cp.HostPath(snapshot)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("the snapshot file: %v, mode %v; want 0600", err, fi.Mode())
		}
		if out, err := cp.Exec(ctx, bin, "etcd", "snapshot", "save", snapshot); err == nil || !strings.Contains(out, "exists") {
			t.Errorf("a second save to the same file: %v, want a refusal:\n%s", err, out)
		}
		out, err = cp.Exec(ctx, bin, "etcd", "snapshot", "status", snapshot)
		if err != nil || !strings.Contains(out, "checksum ok") {
			t.Errorf("snapshot status: %v\n%s", err, out)
		}
	})

	// deleteWorkloads deletes kube-system workloads through the API, as a mistaken
	// kubectl would, and returns when.
	deleteWorkloads := func(t *testing.T, daemonSets, deployments []string) time.Time {
		t.Helper()
		for _, name := range deployments {
			if err := cs.AppsV1().Deployments(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range daemonSets {
			if err := cs.AppsV1().DaemonSets(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Now()
	}
	manifestsDir := cp.HostPath("/etc/kubernetes/manifests")
	controlPlaneWorkloads := []string{"kube-controller-manager", "kube-scheduler"}

	// The control plane's workloads deleted: the checkpoints stand in and the operator
	// puts the workloads back from the ControlPlane resource; recover finds nothing to do.
	step(t, "DeletedControlPlaneWorkloadsComeBackByThemselves", func(t *testing.T) {
		deleted := deleteWorkloads(t, []string{"kube-apiserver"}, controlPlaneWorkloads)
		wait(ctx, t, 3*time.Minute, "the operator to create the workloads again, the self-hosted control plane back", func(ctx context.Context) error {
			if _, err := cs.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, "kube-apiserver", metav1.GetOptions{}); err != nil {
				return err
			}
			return controlPlaneBack(ctx, cs, cpName, time.Time{}, manifestsDir)
		})
		t.Logf("back %s after the deletion", time.Since(deleted).Round(time.Millisecond))
		out, err := cp.Exec(ctx, bin, "recover")
		if err != nil || !strings.Contains(out, "none was missing") {
			t.Errorf("recover after the operator's repair: %v, want \"none was missing\":\n%s", err, out)
		}
	})

	// The same with the operator deleted first: nothing puts the workloads back. The
	// checkpoints keep the control plane serving past the minute after which a checkpoint
	// without a parent used to be removed; recover creates the workloads and the operator
	// again, and the checkpoints retire.
	step(t, "RecoverDeletedControlPlaneWorkloadsAndOperator", func(t *testing.T) {
		// The control plane's Secrets go too: recover puts them back from the checkpoints.
		secrets := map[string]map[string][]byte{}
		for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			s, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			secrets[name] = s.Data
		}
		// The operator first, and gone for good before the rest: deleted together, its pods
		// may outlive the controller manager (whose garbage collector deletes them) and put
		// the workloads back themselves.
		foreground := metav1.DeletePropagationForeground
		if err := cs.AppsV1().Deployments(metav1.NamespaceSystem).Delete(ctx, "selfkube-controller", metav1.DeleteOptions{PropagationPolicy: &foreground}); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 2*time.Minute, "the operator's pods gone", func(ctx context.Context) error {
			pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=selfkube-controller"})
			if err != nil {
				return err
			}
			if len(pods.Items) > 0 {
				return fmt.Errorf("%d pods left", len(pods.Items))
			}
			return nil
		})
		deleted := deleteWorkloads(t, []string{"kube-apiserver"}, controlPlaneWorkloads)
		for name := range secrets {
			if err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		wait(ctx, t, 2*time.Minute, "the apiserver's checkpoint standing in", func(ctx context.Context) error {
			if _, err := os.Stat(filepath.Join(manifestsDir, "checkpoint-kube-apiserver.yaml")); err != nil {
				return err
			}
			return framework.Readyz(ctx, cs)
		})
		time.Sleep(time.Until(deleted.Add(80 * time.Second)))
		if err := framework.Readyz(ctx, cs); err != nil {
			t.Fatalf("80 s after the apiserver's DaemonSet was deleted, the API does not answer: %v", err)
		}
		if _, err := cs.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, "kube-apiserver", metav1.GetOptions{}); err == nil {
			t.Fatal("the apiserver's DaemonSet came back without the operator: the scenario does not test recover")
		}
		checkEvent(ctx, t, cs, "CheckpointLastStandIn", "kube-apiserver")
		out, err := cp.Exec(ctx, bin, "recover", "--dry-run")
		if err != nil || !strings.Contains(out, "nothing was changed") {
			t.Errorf("recover --dry-run: %v\n%s", err, out)
		}
		start := time.Now()
		out, err = cp.Exec(ctx, bin, "recover")
		t.Logf("selfkube recover (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"kube-apiserver (DaemonSet)", "kube-controller-manager (Deployment)", "kube-scheduler (Deployment)", "selfkube-controller (Deployment)",
			"kube-apiserver (Secret)", "kube-controller-manager (Secret)", "kube-scheduler (Secret)"} {
			if !strings.Contains(out, want) {
				t.Errorf("recover does not say it created %s", want)
			}
		}
		for name, want := range secrets {
			s, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("the Secret %s after recover: %v", name, err)
				continue
			}
			if len(s.Data) != len(want) {
				t.Errorf("the Secret %s came back with %d keys, had %d", name, len(s.Data), len(want))
			}
			for k, v := range want {
				if !bytes.Equal(s.Data[k], v) {
					t.Errorf("the Secret %s came back with another %s", name, k)
				}
			}
		}
		wait(ctx, t, 3*time.Minute, "the self-hosted control plane back, no checkpoint standing in", func(ctx context.Context) error {
			return controlPlaneBack(ctx, cs, cpName, time.Time{}, manifestsDir)
		})
		n, err := checkRecoverObjects(ctx, cs)
		t.Logf("after recover: %d ConfigMaps (of %d)", n, recoverConfigMaps)
		if err != nil {
			t.Error(err)
		}
		cpc.settled(t, 1, "the recreated operator to find the control plane as its spec says")
	})

	step(t, "RecoverFromSnapshotAfterEtcdDataLost", func(t *testing.T) {
		if err := cp.PowerOff(); err != nil {
			t.Fatal(err)
		}
		wipeEtcdData(t, cp)
		if err := cp.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		poweredOn := time.Now()
		// etcd starts empty: the API, once it answers, has lost every object.
		wait(ctx, t, 3*time.Minute, "the API answering after the reboot", func(ctx context.Context) error { return framework.Readyz(ctx, cs) })
		if _, err := cs.CoreV1().Namespaces().Get(ctx, recoverNamespace, metav1.GetOptions{}); err == nil {
			t.Fatal("the namespace survived the loss of etcd's data: the scenario did not lose it")
		}
		out, err := cp.Exec(ctx, bin, "recover", "--from-snapshot", snapshot, "--dry-run")
		if err != nil || !strings.Contains(out, "nothing was changed") || !strings.Contains(out, "restore "+snapshot) {
			t.Errorf("recover --from-snapshot --dry-run: %v\n%s", err, out)
		}
		// Killed once the snapshot is restored (etcd stopped, its static pod set aside, the
		// old data moved aside), the same command finishes the recovery.
		killAfterPhase(ctx, t, cp, "recover", "restore", []string{bin, "recover", "--from-snapshot", snapshot})
		if out, err := cp.Exec(ctx, bin, "recover"); err == nil || !strings.Contains(out, "did not finish") {
			t.Errorf("another recover over the interrupted one: %v, want a refusal saying it did not finish:\n%s", err, out)
		}
		start := time.Now()
		var readyz time.Duration
		done := make(chan struct{})
		go func() { // the first /readyz of the restored cluster, as a client sees it
			defer close(done)
			for ctx.Err() == nil {
				if _, err := cs.CoreV1().Namespaces().Get(ctx, recoverNamespace, metav1.GetOptions{}); err == nil && framework.Readyz(ctx, cs) == nil {
					readyz = time.Since(start)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		out, err = cp.Exec(ctx, bin, "recover", "--from-snapshot", snapshot)
		took := time.Since(start)
		t.Logf("selfkube recover --from-snapshot (%s):\n%s", took.Round(time.Millisecond), out)
		if err != nil {
			t.Fatal(err)
		}
		<-done
		t.Logf("recover --from-snapshot, resumed after the kill: restored data served after %s, control plane reconverged after %s (make bench measures a run without a kill)", readyz.Round(time.Millisecond), took.Round(time.Millisecond))
		for _, want := range []string{"restore: done by the earlier run", "etcd now has one member, " + cpName} {
			if !strings.Contains(out, want) {
				t.Errorf("recover does not say %q", want)
			}
		}
		if aside := setAside(cp); len(aside) != 1 {
			t.Errorf("the data directory moved aside: %v, want one", aside)
		}
		wait(ctx, t, 5*time.Minute, "every object back, the Deployment's replicas Ready", func(ctx context.Context) error {
			_, err := checkRecoverObjects(ctx, cs)
			return err
		})
		n, _ := checkRecoverObjects(ctx, cs)
		t.Logf("after recover --from-snapshot: %d ConfigMaps (of %d)", n, recoverConfigMaps)
		// The restored statuses say what ran before; the pods must run again, now: on the
		// rebooted node (and on the worker too, if its kubelet saw them gone from the empty
		// cluster) with containers started since the reboot.
		wait(ctx, t, 3*time.Minute, "the Deployment's three pods running", func(ctx context.Context) error {
			pods, err := cs.CoreV1().Pods(recoverNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=recover-web"})
			if err != nil {
				return err
			}
			running := 0
			for i := range pods.Items {
				p := &pods.Items[i]
				if framework.PodReady(p) && (p.Spec.NodeName == wName || podRestartedSince(p, poweredOn) == nil) {
					running++
				}
			}
			if running != 3 {
				return fmt.Errorf("%d of 3 pods run since the reboot", running)
			}
			return nil
		})
		wait(ctx, t, 3*time.Minute, "both nodes Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, nodes...) })
		wait(ctx, t, 3*time.Minute, "the self-hosted control plane back, no checkpoint standing in", func(ctx context.Context) error {
			return controlPlaneBack(ctx, cs, cpName, time.Time{}, cp.HostPath("/etc/kubernetes/manifests"))
		})
		// A second run finds nothing left to do and changes nothing.
		out, err = cp.Exec(ctx, bin, "recover")
		if err != nil || !strings.Contains(out, "none was missing") {
			t.Errorf("recover after the recovery: %v\n%s", err, out)
		}
	})

	step(t, "JoinAfterRecovery", func(t *testing.T) {
		joiner, err := h.UpWith(ctx, jName, jIP, opts)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cp.Exec(ctx, bin, "token", "create", "--print-join-command")
		if err != nil {
			t.Fatalf("token create: %v\n%s", err, out)
		}
		if out, err := joiner.Exec(ctx, append([]string{bin}, joinCommandArgs(t, out)...)...); err != nil {
			t.Fatalf("join after the recovery: %v\n%s", err, out)
		}
		wait(ctx, t, 3*time.Minute, "the new node Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, jName) })
	})

	step(t, "ScheduledSnapshotsTakenAndPruned", func(t *testing.T) {
		wait(ctx, t, 3*time.Minute, "a scheduled snapshot a minute after the first", func(ctx context.Context) error {
			c, err := cpc.get(ctx)
			if err != nil {
				return err
			}
			if c.Status.Etcd == nil || !c.Status.Etcd.Scheduled[cpName].Time.After(firstScheduled.Add(50*time.Second)) {
				return fmt.Errorf("no scheduled snapshot since %s", firstScheduled)
			}
			return nil
		})
		files, _ := filepath.Glob(cp.HostPath("/var/lib/selfkube/etcd-snapshots/etcd-" + cpName + "-scheduled-*.db"))
		if len(files) != 2 {
			t.Errorf("scheduled snapshots on disk: %v; want the newest 2 (keep: 2)", files)
		}
		for _, f := range files {
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode())
			}
		}
		checkPrivateDirs(t, cp, "/var/lib/selfkube/etcd-snapshots")
	})
}

// wipeEtcdData deletes what etcd's data directory holds on the powered-off node n (the
// directory stays: it is a mount point of the node's disk).
func wipeEtcdData(t *testing.T, n *framework.Node) {
	t.Helper()
	entries, err := os.ReadDir(n.HostPath("/var/lib/etcd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(n.HostPath("/var/lib/etcd"), e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// setAside lists what recover set aside of etcd's data on n: beside the data directory,
// or inside it where the directory is a mount point (as on the harness's nodes).
func setAside(n *framework.Node) []string {
	beside, _ := filepath.Glob(n.HostPath("/var/lib/etcd.before-recover-*"))
	inside, _ := filepath.Glob(n.HostPath("/var/lib/etcd/.before-recover-*"))
	return append(beside, inside...)
}

// benchSelfkubeRecover measures, on one control-plane node, a snapshot and a recovery
// from it after etcd's data was wiped and the node rebooted, with 1,000 ConfigMaps and
// then with 10,000; each recovery must bring every one of them back.
func benchSelfkubeRecover(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	bin := selfkubeBinary(t)
	const name, ip = "rb1", "172.31.0.74"
	n, err := h.UpWith(ctx, name, ip, framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.HostPath("/etc/kubernetes/selfkube.yaml"), []byte(selfkubeConfig(name, ip)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml"); err != nil {
		t.Fatalf("selfkube init: %v\n%s", err, out)
	}
	_, cfg, cs := adminOf(t, n, ip)
	cfg.QPS, cfg.Burst = 200, 400
	fast, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, c := range []struct {
		objects                      int
		snapshot, readyz, reconverge string
	}{
		{1000, framework.StepSnapshot1k, framework.StepRecoverReadyz1k, framework.StepRecoverControl1k},
		{10000, framework.StepSnapshot10k, framework.StepRecoverReadyz10k, framework.StepRecoverCtl10k},
	} {
		createConfigMaps(ctx, t, fast, created, c.objects)
		created = c.objects
		file := fmt.Sprintf("/var/lib/selfkube/backup/bench-%d.db", c.objects)
		start := time.Now()
		if out, err := n.Exec(ctx, bin, "etcd", "snapshot", "save", file); err != nil {
			t.Fatalf("snapshot save: %v\n%s", err, out)
		}
		b.table.Add("selfkube", c.snapshot, time.Since(start))
		if err := n.PowerOff(); err != nil {
			t.Fatal(err)
		}
		wipeEtcdData(t, n)
		if err := n.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 3*time.Minute, "the API answering, empty", func(ctx context.Context) error { return framework.Readyz(ctx, cs) })
		start = time.Now()
		readyz := make(chan time.Duration, 1)
		go func() {
			for ctx.Err() == nil {
				if _, err := cs.CoreV1().ConfigMaps(recoverNamespace).Get(ctx, "cm-00000", metav1.GetOptions{}); err == nil && framework.Readyz(ctx, cs) == nil {
					readyz <- time.Since(start)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			readyz <- 0
		}()
		out, err := n.Exec(ctx, bin, "recover", "--from-snapshot", file)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("recover --from-snapshot: %v\n%s", err, out)
		}
		b.table.Add("selfkube", c.readyz, <-readyz)
		b.table.Add("selfkube", c.reconverge, took)
		count, err := countConfigMaps(ctx, cs)
		t.Logf("%d ConfigMaps before the loss, %d after recover --from-snapshot (%s)", c.objects, count, took.Round(time.Millisecond))
		if err != nil || count != c.objects {
			t.Errorf("after the recovery: %d of %d ConfigMaps (%v)", count, c.objects, err)
		}
		// What recover moved aside is the wiped cluster's data: nothing to keep.
		for _, a := range setAside(n) {
			_ = os.RemoveAll(a)
		}
	}
}

// checkCertsListed runs `selfkube certs check-expiration -o json` on n and compares its
// list with what is there, found independently: every file below the directories it
// covers that holds a PEM certificate or a kubeconfig with an embedded client
// certificate, and every kube-system Secret key that holds one, must be listed where it
// is; so a certificate added later cannot be forgotten. A fresh cluster has nothing due.
func checkCertsListed(ctx context.Context, t *testing.T, cs kubernetes.Interface, n *framework.Node, bin string) {
	t.Helper()
	out, err := n.Exec(ctx, bin, "certs", "check-expiration", "-o", "json")
	if err != nil {
		t.Fatalf("certs check-expiration on a fresh cluster: %v\n%s", err, out)
	}
	var report struct {
		Certificates, CAs []struct {
			Name, Where string
			NotAfter    time.Time
		}
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &report); err != nil {
		t.Fatalf("reading the report: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, c := range append(report.Certificates, report.CAs...) {
		listed[c.Where] = true
		listed[c.Where+" "+strings.SplitN(c.Name, " ", 2)[0]] = true
	}
	holdsCert := func(b []byte) bool {
		return bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) || bytes.Contains(b, []byte("client-certificate-data:"))
	}
	found := 0
	for _, dir := range []string{"/etc/kubernetes", "/var/lib/kubelet/pki", "/var/lib/selfkube/assets"} {
		_ = filepath.WalkDir(n.HostPath(dir), func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil || !holdsCert(b) {
				return nil
			}
			found++
			rel, _ := filepath.Rel(n.Dir(), p)
			if where := "file /" + rel; !listed[where] {
				t.Errorf("%s holds a certificate that check-expiration does not list", where)
			}
			return nil
		})
	}
	secrets, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range secrets.Items {
		for k, v := range sec.Data {
			if holdsCert(v) {
				found++
				if where := "secret kube-system/" + sec.Name + " " + k; !listed[where] {
					t.Errorf("%s holds a certificate that check-expiration does not list", where)
				}
			}
		}
	}
	t.Logf("check-expiration lists %d certificates and %d CAs; %d files and Secret keys hold one", len(report.Certificates), len(report.CAs), found)
	for _, want := range []string{"secret kube-system/kube-apiserver apiserver.crt", "file /etc/kubernetes/pki/etcd/server.crt", "file /etc/kubernetes/admin.conf admin.conf"} {
		if !listed[want] {
			t.Errorf("check-expiration does not list %s", want)
		}
	}
}
