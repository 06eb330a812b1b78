package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
)

// freePort is a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nodeWithEtcd is a node layout below a temp dir with the etcd static pod init renders,
// its client URL moved to a free loopback port, and init's record naming the node.
func nodeWithEtcd(t *testing.T) (host.Layout, *corev1.Pod) {
	t.Helper()
	cfg := configtest.Config(t, nil)
	assets, err := manifests.Bootstrap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := host.Layout{Root: t.TempDir()}
	for _, a := range assets {
		if filepath.Base(a.Path) != manifests.EtcdStaticPod {
			continue
		}
		p := a.Object.(*corev1.Pod)
		var f map[string]string
		if err := json.Unmarshal([]byte(p.Annotations[manifests.AnnotationEtcdFlags]), &f); err != nil {
			t.Fatal(err)
		}
		f["listen-client-urls"] = fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
		b, _ := json.Marshal(f)
		p.Annotations[manifests.AnnotationEtcdFlags] = string(b)
		data, err := manifests.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := host.WriteFile(filepath.Join(l.ManifestsDir(), manifests.EtcdStaticPod), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rec, _ := host.LoadRecord(l, "init")
		rec.NodeName = cfg.Node.Name
		if err := rec.Save(); err != nil {
			t.Fatal(err)
		}
		return l, p
	}
	t.Fatal("no etcd static pod rendered")
	return l, nil
}

// snapshotFile saves a snapshot of a throw-away etcd holding n keys.
func snapshotFile(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "s", filepath.Join(dir, "data")
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	u, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*u}, []url.URL{*u}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*u}, []url.URL{*u}
	cfg.InitialCluster = "s=http://127.0.0.1:0"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	<-e.Server.ReadyNotify()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Clients[0].Addr().String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("/registry/k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	path := filepath.Join(dir, "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func options(l host.Layout) Options {
	return Options{Layout: l, Kubeconfig: "/nonexistent", EtcdTimeout: 2 * time.Second, APITimeout: time.Second, SelfHostedTimeout: time.Second}
}

func TestPrepareRefusesWhatItCannotRecover(t *testing.T) {
	t.Run("no etcd member on this node", func(t *testing.T) {
		_, err := Prepare(options(host.Layout{Root: t.TempDir()}))
		if err == nil || !strings.Contains(err.Error(), "no etcd static pod") {
			t.Fatalf("Prepare on a node without etcd: %v", err)
		}
	})
	t.Run("a damaged snapshot", func(t *testing.T) {
		l, _ := nodeWithEtcd(t)
		snap := snapshotFile(t, 10)
		data, _ := os.ReadFile(snap)
		data[len(data)/3] ^= 0x55
		bad := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		o := options(l)
		o.Snapshot = bad
		if _, err := Prepare(o); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("Prepare with a damaged snapshot: %v", err)
		}
		if _, err := os.Stat(filepath.Join(l.ManifestsDir(), manifests.EtcdStaticPod)); err != nil {
			t.Fatalf("the refusal changed the node: %v", err)
		}
	})
}

// A restore stops etcd (its static pod set aside, kept), moves the old data directory
// aside with the run's time, and puts the restored one in its place, 0700; the plan of
// --dry-run says all of it. A second run with other arguments is refused while the first
// is unfinished, and one with the same arguments skips what the first finished.
func TestRestoreMovesTheOldDataAsideAndResumes(t *testing.T) {
	l, pod := nodeWithEtcd(t)
	m, err := manifests.EtcdMemberOf(pod)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := l.HostPath(m.DataDir)
	if err := os.MkdirAll(filepath.Join(dataDir, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "member", "old"), []byte("the lost cluster"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := options(l)
	o.Snapshot = snapshotFile(t, 25)
	o.Now = func() time.Time { return time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC) }
	d, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(d.Plan(), "\n")
	for _, want := range []string{"restore " + o.Snapshot, "25 keys", "move it aside to " + dataDir + ".before-recover-"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan does not say %q:\n%s", want, plan)
		}
	}
	ctx := context.Background()
	if err := stopEtcd(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.ManifestsDir(), manifests.EtcdStaticPod)); !os.IsNotExist(err) {
		t.Fatalf("etcd's static pod is still in the kubelet's directory: %v", err)
	}
	if err := d.Record.Finished("stop-etcd"); err != nil {
		t.Fatal(err)
	}
	if err := restore(ctx, d); err != nil {
		t.Fatal(err)
	}
	aside := dataDir + ".before-recover-20261207T080000Z"
	if b, err := os.ReadFile(filepath.Join(aside, "member", "old")); err != nil || string(b) != "the lost cluster" {
		t.Errorf("the old data is not kept aside at %s: %v", aside, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db")); err != nil {
		t.Errorf("no restored database in %s: %v", dataDir, err)
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the restored data directory: %v %v, want 0700", err, fi.Mode())
	}
	if err := d.Record.Finished("restore"); err != nil {
		t.Fatal(err)
	}

	// Interrupted here. Another recovery is refused, naming what to do.
	other := options(l)
	other.ForceNewCluster = true
	if _, err := Prepare(other); err == nil || !strings.Contains(err.Error(), "did not finish") || !strings.Contains(err.Error(), "stop-etcd, restore") {
		t.Fatalf("a different recovery over an unfinished one: %v", err)
	}
	// The same one resumes: etcd's pod is read from where the first run set it aside.
	again, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Member != m || !again.Record.Has("restore") {
		t.Fatalf("the resumed run sees member %+v and phases %v", again.Member, again.Record.Done)
	}
	if _, err := os.Stat(filepath.Join(l.StateDir(), "recover", manifests.EtcdStaticPod)); err != nil {
		t.Errorf("etcd's static pod is not kept aside: %v", err)
	}
}

// --force deletes etcd's old data instead of moving it aside; an empty directory needs
// neither. The directory itself always stays (it may be a mount point).
func TestSetAside(t *testing.T) {
	l, _ := nodeWithEtcd(t)
	d, err := Prepare(options(l))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.setAside(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil || len(d.Record.Recovery.MovedAside) != 0 {
		t.Fatalf("an empty directory: %v, moved aside %v", err, d.Record.Recovery.MovedAside)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Force = true
	if err := d.setAside(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	matches, _ := filepath.Glob(dir + ".*")
	if err != nil || len(entries) != 0 || len(matches) != 0 || len(d.Record.Recovery.MovedAside) != 0 {
		t.Fatalf("--force left %v beside and %v inside (%v)", matches, entries, err)
	}
}

// A data directory that cannot be renamed (here a symbolic link to another disk's
// directory; a mount point alike) keeps its place: the old data is moved aside inside it,
// the snapshot restored inside it, and the link still points where it did.
func TestRestoreIntoADataDirectoryThatStays(t *testing.T) {
	l, pod := nodeWithEtcd(t)
	m, _ := manifests.EtcdMemberOf(pod)
	dataDir := l.HostPath(m.DataDir)
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.MkdirAll(filepath.Join(disk, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(disk, "member", "old"), []byte("the lost cluster"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(disk, dataDir); err != nil {
		t.Fatal(err)
	}
	o := options(l)
	o.Snapshot = snapshotFile(t, 5)
	o.Now = func() time.Time { return time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC) }
	d, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(dataDir); err != nil || target != disk {
		t.Fatalf("the data directory is no longer the link to %s: %q %v", disk, target, err)
	}
	if b, err := os.ReadFile(filepath.Join(disk, ".before-recover-20261207T090000Z", "member", "old")); err != nil || string(b) != "the lost cluster" {
		t.Errorf("the old data is not kept aside on its disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(disk, "member", "snap", "db")); err != nil {
		t.Errorf("no restored database on the disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(disk, ".restoring")); !os.IsNotExist(err) {
		t.Errorf("the staging directory is left: %v", err)
	}
	// A second run of the phase sees the restore done.
	if err := restore(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func TestMountPoint(t *testing.T) {
	if !mountPoint("/proc") || !inPlace("/proc") {
		t.Error("/proc is not seen as a mount point")
	}
	if dir := t.TempDir(); mountPoint(filepath.Join(dir, "x")) || inPlace(dir) && !mountPoint(dir) {
		t.Errorf("a plain directory %s is seen as a mount point", dir)
	}
}

// While etcd restarts, an active apiserver checkpoint is retired (an apiserver without
// etcd would hang the kubelet's requests), and recorded, so that even a run interrupted
// there activates it again once etcd serves.
func TestTheAPIServerStandInPausesWhileEtcdRestarts(t *testing.T) {
	l, _ := nodeWithEtcd(t)
	store := checkpoint.Store{Dir: l.CheckpointsDir(), ManifestsDir: l.ManifestsDir()}
	pod := &corev1.Pod{}
	pod.Name = "checkpoint-kube-apiserver"
	if _, err := store.Write(checkpoint.CheckpointAPIServer, pod, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.Activate(checkpoint.CheckpointAPIServer); err != nil {
		t.Fatal(err)
	}
	o := options(l)
	o.Snapshot = snapshotFile(t, 3)
	d, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := stopEtcd(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if store.Active(checkpoint.CheckpointAPIServer) {
		t.Fatal("the apiserver's checkpoint is still active while etcd is stopped")
	}
	again, err := Prepare(o) // an interrupted run, resumed
	if err != nil {
		t.Fatal(err)
	}
	if err := again.resumeStandIns(); err != nil {
		t.Fatal(err)
	}
	if !store.Active(checkpoint.CheckpointAPIServer) || len(again.Record.Recovery.Paused) != 0 {
		t.Fatalf("after etcd: active %v, still paused %v", store.Active(checkpoint.CheckpointAPIServer), again.Record.Recovery.Paused)
	}
}

// A control-plane Secret deleted through the API comes back from the checkpoint's copy of
// its files: regular files only, each under its key; without a checkpoint recover says
// what to do instead.
func TestCheckpointedSecret(t *testing.T) {
	d := &Data{Options: Options{Layout: host.Layout{Root: t.TempDir()}}}
	if _, err := d.checkpointedSecret(manifests.Scheduler); err == nil || !strings.Contains(err.Error(), "no checkpoint of kube-scheduler") {
		t.Fatalf("without a checkpoint: %v, want an error saying so", err)
	}
	dir := filepath.Join(d.Layout.CheckpointsDir(), manifests.Scheduler, "volumes", manifests.SecretVolume)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scheduler.conf"), []byte("kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("not the checkpoint's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linked.key")); err != nil {
		t.Fatal(err)
	}
	data, err := d.checkpointedSecret(manifests.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 || string(data["scheduler.conf"]) != "kubeconfig" {
		t.Errorf("Secret data %v, want scheduler.conf only", data)
	}
	s := manifests.ControlPlaneSecret(manifests.Scheduler, data)
	if s.Name != manifests.Scheduler || s.Namespace != manifests.Namespace || s.Labels[manifests.LabelManagedBy] != manifests.ManagedBy || s.Kind != "Secret" {
		t.Errorf("the Secret put back: %s/%s %s %v", s.Namespace, s.Name, s.Kind, s.Labels)
	}
}
