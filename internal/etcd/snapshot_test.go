package etcd

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// stopOnce stops an embedded member once, whether the test or its cleanup asks first.
var stopOnce = map[*embed.Etcd]func(){}

// startEmbedded runs a one-member etcd on dataDir (loopback, free ports) until the test
// ends, and returns a client of it.
func startEmbedded(t *testing.T, dataDir, name, token string) (*clientv3.Client, *embed.Etcd) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.InitialClusterToken = name, dataDir, token
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	peer, _ := url.Parse("http://127.0.0.1:0")
	client, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = name + "=http://127.0.0.1:0"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(e.Close) })
	stopOnce[e] = func() { once.Do(e.Close) }
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("embedded etcd not ready")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, e
}

// TestSnapshotRestoreRoundTrip saves a snapshot of a member with keys in it, checks it,
// restores it into a new data directory, and starts a member there: every key is back,
// the cluster is a new one with one member, and a watcher of an old revision is told it
// was compacted (so informers list again instead of missing writes).
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, e := startEmbedded(t, filepath.Join(dir, "old"), "m1", "old-cluster")
	for i := 0; i < 200; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("/registry/configmaps/default/cm-%03d", i), fmt.Sprintf("value %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Delete(ctx, "/registry/configmaps/default/cm-000"); err != nil {
		t.Fatal(err)
	}
	oldID := e.Server.Cluster().ID()
	if locked, err := WALLocked(filepath.Join(dir, "old")); err != nil || !locked {
		t.Fatalf("the write-ahead log of a running member: locked %v (%v), want locked", locked, err)
	}
	snap := filepath.Join(dir, "snap.db")
	rev, size, err := (&Client{c: c}).Snapshot(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(snap)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != size {
		t.Fatalf("snapshot file: %v, mode %v, size %d (reported %d)", err, st.Mode(), st.Size(), size)
	}

	info, err := SnapshotStatus(snap)
	if err != nil {
		t.Fatal(err)
	}
	if info.Keys != 199 || info.Revision != rev || !info.Checksum || info.Size != size {
		t.Fatalf("status %+v: want 199 keys at revision %d, a checksum, %d bytes", info, rev, size)
	}

	// A damaged copy is refused by status and by restore.
	data, _ := os.ReadFile(snap)
	data[len(data)/2] ^= 0xff
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := SnapshotStatus(bad); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("status of a damaged snapshot: %v", err)
	}
	if err := Restore(RestoreOptions{Snapshot: bad, DataDir: filepath.Join(dir, "bad"), Name: "m1", PeerURL: "http://127.0.0.1:2380", ClusterToken: "x"}); err == nil {
		t.Fatal("restored a damaged snapshot")
	}
	if _, err := SnapshotStatus(filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("status of a missing file succeeded")
	}

	stopOnce[e]()
	if locked, err := WALLocked(filepath.Join(dir, "old")); err != nil || locked {
		t.Fatalf("the write-ahead log of a stopped member: locked %v (%v), want free", locked, err)
	}

	restored := filepath.Join(dir, "restored")
	if err := Restore(RestoreOptions{Snapshot: snap, DataDir: restored, Name: "m2", PeerURL: "http://127.0.0.1:0", ClusterToken: "new-cluster"}); err != nil {
		t.Fatal(err)
	}
	if err := Restore(RestoreOptions{Snapshot: snap, DataDir: restored, Name: "m2", PeerURL: "http://127.0.0.1:0", ClusterToken: "new-cluster"}); err == nil {
		t.Fatal("restored over an existing data directory")
	}
	c2, e2 := startEmbedded(t, restored, "m2", "ignored-once-data-exists")
	if e2.Server.Cluster().ID() == oldID {
		t.Fatal("the restored member has the old cluster's ID")
	}
	resp, err := c2.Get(ctx, "/registry/configmaps/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 199 {
		t.Fatalf("restored %d keys, want 199", resp.Count)
	}
	got, err := c2.Get(ctx, "/registry/configmaps/default/cm-042")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "value 42" {
		t.Fatalf("cm-042 after restore: %v %v", got, err)
	}
	if got.Header.Revision < rev+RevisionBump {
		t.Fatalf("revision after restore %d, want at least %d + %d", got.Header.Revision, rev, RevisionBump)
	}
	members, err := c2.MemberList(ctx)
	if err != nil || len(members.Members) != 1 || members.Members[0].Name != "m2" {
		t.Fatalf("members after restore: %v %v", members, err)
	}
	w := c2.Watch(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithRev(rev))
	select {
	case wr := <-w:
		if wr.CompactRevision == 0 {
			t.Fatalf("a watch from the snapshot's revision %d was not told it is compacted: %+v", rev, wr)
		}
	case <-ctx.Done():
		t.Fatal("no answer to the watch")
	}
}
