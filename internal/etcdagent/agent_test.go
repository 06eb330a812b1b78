package etcdagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
)

type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) Event(typ, reason, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, typ+" "+reason+": "+msg)
}

func (e *events) has(reason string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.ContainsFunc(e.list, func(s string) bool { return strings.Contains(s, " "+reason+": ") })
}

// node is a control-plane node's static-pod directory with the etcd pod init renders,
// and a ControlPlane whose status is st.
func node(t *testing.T, st controlplane.Status) (*Agent, *dynamicfake.FakeDynamicClient, *events) {
	t.Helper()
	cfg := configtest.Config(t, nil)
	assets, err := manifests.Bootstrap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, a := range assets {
		if filepath.Base(a.Path) == manifests.EtcdStaticPod {
			data, err := manifests.Encode(a.Object)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, manifests.EtcdStaticPod), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cp := &controlplane.ControlPlane{ObjectMeta: metav1.ObjectMeta{Name: controlplane.Name, Generation: 2},
		Spec: controlplane.SpecFrom(&cfg.Cluster), Status: st}
	u, err := cp.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{controlplane.GroupVersionResource: controlplane.Kind + "List"}, u)
	ev := &events{}
	a := &Agent{Client: client, Node: cfg.Node.Name, ManifestsDir: dir, SnapshotDir: filepath.Join(t.TempDir(), "snapshots"),
		Keep: 2, Events: ev, Log: slog.New(slog.DiscardHandler), Now: time.Now,
		HandOff: func(context.Context, string) (string, error) { return "", nil }}
	return a, client, ev
}

func run(t *testing.T, a *Agent) {
	t.Helper()
	if err := a.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not within 5 s", what)
}

func readPod(t *testing.T, a *Agent) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.ManifestsDir, manifests.EtcdStaticPod))
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// The member named in the status gets the flags asked, and only those: selfkube's own
// flags stay, a flag given before and not now is gone.
func TestTheNamedMemberGetsTheFlags(t *testing.T) {
	name := configtest.Config(t, nil).Node.Name
	a2, _, ev := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{Member: &controlplane.EtcdMemberChange{
		Node: name, Generation: 2, Target: controlplane.TargetSpec, ExtraArgs: map[string]string{"snapshot-count": "5000", "log-level": "debug"}}}})
	// The member leads: it hands its leadership on while it still runs the old flags.
	var handedOffBefore []string
	a2.HandOff = func(_ context.Context, endpoint string) (string, error) {
		handedOffBefore = append(handedOffBefore, endpoint)
		if slices.Contains(readPod(t, a2).Spec.Containers[0].Command, "--snapshot-count=5000") {
			t.Errorf("the leadership was handed on after the static pod changed")
		}
		return "ha2", nil
	}
	run(t, a2)
	eventually(t, "the member changed", func() bool { return ev.has("EtcdMemberChanged") })
	if len(handedOffBefore) != 1 || handedOffBefore[0] != "https://127.0.0.1:2379" || !ev.has("EtcdLeadershipHandedOff") {
		t.Errorf("leadership hand-offs asked of %v, events %v; want one, of the local member, said in an Event", handedOffBefore, ev.list)
	}
	p := readPod(t, a2)
	cmd := p.Spec.Containers[0].Command
	for _, want := range []string{"--snapshot-count=5000", "--log-level=debug", "--name=" + name, "--data-dir=/var/lib/etcd"} {
		if !slices.Contains(cmd, want) {
			t.Errorf("the command %v lacks %s", cmd, want)
		}
	}
	if slices.Contains(cmd, "--snapshot-count=10000") {
		t.Errorf("selfkube's default stayed beside the override: %v", cmd)
	}
	if got := p.Annotations[manifests.AnnotationEtcdExtraArgs]; got != `{"log-level":"debug","snapshot-count":"5000"}` {
		t.Errorf("extra-args annotation %q", got)
	}
	// The file replaced is kept, 0600, and the new one is 0600 too.
	kept, _ := filepath.Glob(filepath.Join(a2.SnapshotDir, "etcd.yaml.before-*"))
	if len(kept) != 1 {
		t.Fatalf("the replaced static pod kept as %v, want one copy", kept)
	}
	for _, f := range []string{filepath.Join(a2.ManifestsDir, manifests.EtcdStaticPod), kept[0]} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
	if entries, _ := os.ReadDir(a2.ManifestsDir); len(entries) != 1 {
		t.Errorf("the static-pod directory holds %d files, want etcd.yaml alone (no temporary file left)", len(entries))
	}
}

// A member that cannot hand its leadership on is changed all the same (its peers elect a
// leader), and the failure is said in a Warning.
func TestAFailedHandOffDoesNotStopTheChange(t *testing.T) {
	a, _, ev := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{Member: &controlplane.EtcdMemberChange{
		Node: configtest.Config(t, nil).Node.Name, Generation: 2, Target: controlplane.TargetSpec, ExtraArgs: map[string]string{"snapshot-count": "5000"}}}})
	a.HandOff = func(context.Context, string) (string, error) {
		return "", errors.New("handing etcd's leadership on: to ha2: etcdserver: request timed out, leader transfer took too long")
	}
	run(t, a)
	eventually(t, "the member changed", func() bool { return ev.has("EtcdMemberChanged") })
	if !ev.has("EtcdLeadershipKept") || ev.has("EtcdLeadershipHandedOff") {
		t.Errorf("events %v: want the failed hand-off said", ev.list)
	}
	if !slices.Contains(readPod(t, a).Spec.Containers[0].Command, "--snapshot-count=5000") {
		t.Errorf("the change was not made")
	}
}

// Once the named member runs its change, the agent checks it (endpoint health, member
// list) and reports each check under its node, again while it stays named; a failing
// check is reported with what failed.
func TestTheChangedMemberIsCheckedAndReported(t *testing.T) {
	name := configtest.Config(t, nil).Node.Name
	a, client, _ := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{Member: &controlplane.EtcdMemberChange{
		Node: name, Generation: 2, Target: controlplane.TargetLastKnownGood}}})
	var mu sync.Mutex
	calls, result := 0, error(errors.New("etcd member 8e9e05c52164694d has not started"))
	a.CheckMember = func(_ context.Context, endpoint string) (int32, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if !strings.HasPrefix(endpoint, "https://") {
			return 0, fmt.Errorf("endpoint %q", endpoint)
		}
		if result != nil {
			return 0, result
		}
		return 3, nil
	}
	run(t, a)
	reported := func() controlplane.EtcdCheck {
		u, err := client.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cp, err := controlplane.FromUnstructured(u)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Status.Etcd.Checks[name]
	}
	eventually(t, "the failing check reported", func() bool {
		c := reported()
		return c.Generation == 2 && c.Target == controlplane.TargetLastKnownGood && !c.Healthy && strings.Contains(c.Message, "has not started")
	})
	mu.Lock()
	result = nil
	mu.Unlock()
	// Checked again while named (every CheckEvery), so the passing check follows.
	time.Sleep(CheckEvery)
	eventually(t, "the passing check reported", func() bool {
		c := reported()
		return c.Healthy && c.Members == 3 && c.Message == ""
	})
	if p := readPod(t, a); p.Annotations[manifests.AnnotationEtcdExtraArgs] != "{}" {
		t.Errorf("checking changed the static pod: %v", p.Annotations)
	}
}

// A flag that selfkube owns is refused, with an Event, and the file stays as it was.
func TestAnOwnFlagIsRefused(t *testing.T) {
	a, _, ev := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{Member: &controlplane.EtcdMemberChange{
		Node: configtest.Config(t, nil).Node.Name, Generation: 2, ExtraArgs: map[string]string{"data-dir": "/tmp/elsewhere"}}}})
	before, err := os.ReadFile(filepath.Join(a.ManifestsDir, manifests.EtcdStaticPod))
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	eventually(t, "the refusal", func() bool { return ev.has("EtcdChangeFailed") })
	after, _ := os.ReadFile(filepath.Join(a.ManifestsDir, manifests.EtcdStaticPod))
	if string(before) != string(after) {
		t.Errorf("the static pod changed on a refused flag")
	}
}

// A snapshot asked for is taken into a 0700 directory, 0600, reported in the status
// under this node's name (the other nodes' entries stay), and only the newest Keep stay.
func TestSnapshotsAreTakenReportedAndPruned(t *testing.T) {
	other := controlplane.EtcdSnapshot{Generation: 3, Path: "/elsewhere.db", Time: metav1.NewTime(time.Unix(0, 0))}
	a, client, _ := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{SnapshotFor: 3,
		Snapshots: map[string]controlplane.EtcdSnapshot{"other-node": other}}})
	if err := os.MkdirAll(a.SnapshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for i, age := range []time.Duration{3 * time.Hour, 2 * time.Hour} { // two older snapshots
		f := filepath.Join(a.SnapshotDir, fmt.Sprintf("etcd-old-%d.db", i))
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, time.Now().Add(-age), time.Now().Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	a.Snapshot = func(_ context.Context, endpoint, path string) (int64, int64, error) {
		endpoints = append(endpoints, endpoint)
		return 42, 7, os.WriteFile(path, []byte("snapshot"), 0o600)
	}
	run(t, a)
	var got controlplane.EtcdSnapshot
	eventually(t, "the snapshot reported", func() bool {
		u, err := client.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cp, err := controlplane.FromUnstructured(u)
		if err != nil || cp.Status.Etcd == nil {
			return false
		}
		if cp.Status.Etcd.Snapshots["other-node"].Path != other.Path {
			t.Fatalf("another node's snapshot was lost: %+v", cp.Status.Etcd.Snapshots)
		}
		got = cp.Status.Etcd.Snapshots[a.Node]
		return got.Path != ""
	})
	if got.Generation != 3 || got.Revision != 42 || got.Size != 7 || got.Error != "" || !strings.HasPrefix(got.Path, a.SnapshotDir+"/etcd-") {
		t.Errorf("reported %+v", got)
	}
	if len(endpoints) != 1 || endpoints[0] != "https://127.0.0.1:2379" {
		t.Errorf("snapshot asked of %v, want the member's loopback client URL once", endpoints)
	}
	if fi, err := os.Stat(a.SnapshotDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("snapshot directory: %v %v, want 0700", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(a.SnapshotDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || !slices.Contains(names, "etcd-old-1.db") || !slices.Contains(names, filepath.Base(got.Path)) {
		t.Errorf("kept %v, want the newest two: etcd-old-1.db and the new one", names)
	}
}

// A failed snapshot is reported with its error, for the operator to say.
func TestAFailedSnapshotIsReported(t *testing.T) {
	a, client, ev := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{SnapshotFor: 2}})
	a.Snapshot = func(context.Context, string, string) (int64, int64, error) { return 0, 0, errors.New("etcd is down") }
	run(t, a)
	eventually(t, "the failure reported", func() bool {
		u, err := client.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cp, _ := controlplane.FromUnstructured(u)
		return cp != nil && cp.Status.Etcd != nil && strings.Contains(cp.Status.Etcd.Snapshots[a.Node].Error, "etcd is down")
	})
	if !ev.has("EtcdSnapshotFailed") {
		t.Errorf("no EtcdSnapshotFailed Event")
	}
}

// A snapshot that failed and then succeeded is reported as a success: the error of the
// first try does not outlive it (the report is a merge patch).
func TestASnapshotRetriedClearsItsError(t *testing.T) {
	a, client, _ := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{SnapshotFor: 2}})
	var mu sync.Mutex
	clock, fail := time.Now(), true
	a.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	a.Snapshot = func(_ context.Context, _, path string) (int64, int64, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return 0, 0, errors.New("etcd is down")
		}
		return 7, 8, os.WriteFile(path, []byte("snapshot"), 0o600)
	}
	mine := func() controlplane.EtcdSnapshot {
		u, err := client.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
		if err != nil {
			return controlplane.EtcdSnapshot{}
		}
		cp, _ := controlplane.FromUnstructured(u)
		if cp == nil || cp.Status.Etcd == nil {
			return controlplane.EtcdSnapshot{}
		}
		return cp.Status.Etcd.Snapshots[a.Node]
	}
	run(t, a)
	eventually(t, "the failure reported", func() bool { return mine().Error != "" })
	mu.Lock()
	clock, fail = clock.Add(RetryAfter+time.Second), false
	mu.Unlock()
	if err := a.Sync(context.Background()); err != nil { // without waiting for the resync
		t.Fatal(err)
	}
	eventually(t, "the success reported", func() bool { return mine().Path != "" })
	if got := mine(); got.Error != "" || got.Revision != 7 {
		t.Errorf("after the retry: %+v, want a success without the first try's error", got)
	}
}

// The newest snapshots and the newest replaced static pods are kept, keep of each, and
// the newest keepScheduled scheduled snapshots, counted apart (frequent scheduled ones
// never push out the snapshot taken before an upgrade); a snapshot left half-written is
// removed; other files (one saved by hand) are left alone.
func TestPruneKeepsTheNewestOfEach(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	write := func(name string, age int) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		at := base.Add(-time.Duration(age) * time.Hour)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		write(fmt.Sprintf("etcd-n1-generation-%d.db", i), i)
		write(fmt.Sprintf("etcd.yaml.before-%d", i), i)
	}
	write("etcd-n1-generation-9.db.part", 0)
	write("notes.txt", 9)
	write("etcd-n1-scheduled-a.db", 5)
	write("etcd-n1-scheduled-b.db", 6)
	write("etcd-n1-scheduled-c.db", 7)
	write("manual-n1-x.db", 20)
	if err := prune(dir, 2, 1); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{"etcd-n1-generation-0.db", "etcd-n1-generation-1.db", "etcd-n1-scheduled-a.db", "etcd.yaml.before-0", "etcd.yaml.before-1", "manual-n1-x.db", "notes.txt"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

func TestScheduledDue(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name         string
		interval     time.Duration
		last, failed time.Time
		want         bool
	}{
		{"off", 0, time.Time{}, time.Time{}, false},
		{"none yet", time.Hour, time.Time{}, time.Time{}, true},
		{"recent", time.Hour, now.Add(-59 * time.Minute), time.Time{}, false},
		{"an interval ago", time.Hour, now.Add(-time.Hour), time.Time{}, true},
		{"failed just now", time.Hour, now.Add(-2 * time.Hour), now.Add(-time.Second), false},
		{"failed a while ago", time.Hour, now.Add(-2 * time.Hour), now.Add(-RetryAfter), true},
		{"a failure before the last success", time.Hour, now.Add(-time.Hour), now.Add(-2 * time.Hour), true},
		{"newest in the future (clock set back)", time.Hour, now.Add(time.Hour), time.Time{}, true},
	} {
		if got := ScheduledDue(c.interval, c.last, c.failed, now); got != c.want {
			t.Errorf("%s: due %v, want %v", c.name, got, c.want)
		}
	}
}

// Scheduled snapshots are taken every interval, reported under status.etcd.scheduled
// (the operator's snapshots entry stays), and only the newest KeepScheduled stay on disk,
// 0600 in a 0700 directory.
func TestScheduledSnapshotsAreTakenReportedAndPruned(t *testing.T) {
	name := configtest.Config(t, nil).Node.Name
	a, client, ev := node(t, controlplane.Status{Etcd: &controlplane.EtcdStatus{
		Snapshots: map[string]controlplane.EtcdSnapshot{name: {Generation: 1, Path: "/x"}}}})
	var mu sync.Mutex
	clock := time.Now()
	a.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	a.Interval, a.KeepScheduled = time.Hour, 2
	taken := 0
	a.Snapshot = func(_ context.Context, _, path string) (int64, int64, error) {
		mu.Lock()
		defer mu.Unlock()
		taken++
		if err := os.WriteFile(path, []byte("snapshot"), 0o600); err != nil {
			return 0, 0, err
		}
		return int64(100 + taken), 8, os.Chtimes(path, clock, clock)
	}
	scheduled := func() (controlplane.EtcdSnapshot, *controlplane.EtcdStatus) {
		u, err := client.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
		if err != nil {
			return controlplane.EtcdSnapshot{}, nil
		}
		cp, _ := controlplane.FromUnstructured(u)
		if cp == nil || cp.Status.Etcd == nil {
			return controlplane.EtcdSnapshot{}, nil
		}
		return cp.Status.Etcd.Scheduled[a.Node], cp.Status.Etcd
	}
	run(t, a)
	eventually(t, "the first scheduled snapshot reported", func() bool { sn, _ := scheduled(); return sn.Revision == 101 })
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if taken != 1 {
		t.Errorf("%d snapshots within one interval, want 1", taken)
	}
	mu.Unlock()
	for i := 0; i < 3; i++ {
		mu.Lock()
		clock = clock.Add(time.Hour)
		mu.Unlock()
		if err := a.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sn, st := scheduled()
	if sn.Revision != 104 || sn.Generation != 0 || !strings.Contains(sn.Path, "-scheduled-") {
		t.Errorf("newest scheduled snapshot reported %+v, want the fourth (revision 104)", sn)
	}
	if st.Snapshots[name].Path != "/x" {
		t.Errorf("the snapshot before a change was overwritten: %+v", st.Snapshots)
	}
	files, _ := filepath.Glob(filepath.Join(a.SnapshotDir, "etcd-*-scheduled-*.db"))
	if len(files) != 2 || !slices.Contains(files, sn.Path) {
		t.Errorf("on disk %v, want the newest two, %s among them", files, sn.Path)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(a.SnapshotDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("snapshot directory mode %v, want 0700", fi.Mode())
	}
	if !ev.has("EtcdSnapshotTaken") {
		t.Error("no EtcdSnapshotTaken Event")
	}

	// A restarted agent counts from the newest snapshot on disk, not from zero.
	b := &Agent{Node: a.Node, SnapshotDir: a.SnapshotDir}
	b.lastScheduled = newestScheduled(b.SnapshotDir, b.Node)
	if !b.lastScheduled.Equal(clock) {
		t.Errorf("a new agent sees the newest scheduled snapshot at %v, want %v", b.lastScheduled, clock)
	}
}
