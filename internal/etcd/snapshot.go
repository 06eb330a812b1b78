package etcd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// SnapshotInfo is what a snapshot file holds, read from the file alone.
type SnapshotInfo struct {
	// Revision is the newest keyspace revision in it.
	Revision int64 `json:"revision"`
	// Keys is how many keys it holds (not deleted).
	Keys int `json:"keys"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Hash is etcd's hash of its content (etcdutl snapshot status prints the same).
	Hash uint32 `json:"hash"`
	// StorageVersion is the etcd storage version that wrote it ("" before v3.6).
	StorageVersion string `json:"storageVersion,omitempty"`
	// Checksum says the file ends with the SHA-256 of its content (a snapshot taken from
	// a member through the client API does; a member's own db file does not) and that it
	// matches.
	Checksum bool `json:"checksum"`
}

// SnapshotStatus checks the snapshot at path and says what it holds: the database's
// own consistency check (every page of bbolt), then, when the file carries one, its
// SHA-256 checksum. A file that fails either is an error that says so: restoring it would
// lose or corrupt data.
func SnapshotStatus(path string) (SnapshotInfo, error) {
	var info SnapshotInfo
	st, err := os.Stat(path)
	if err != nil {
		return info, err
	}
	if !st.Mode().IsRegular() {
		return info, fmt.Errorf("%s is not a regular file", path)
	}
	info.Size = st.Size()
	ok, has, err := verifyChecksum(path, st.Size())
	if err != nil {
		return info, err
	}
	if has && !ok {
		return info, fmt.Errorf("%s: the SHA-256 checksum at its end does not match its content: the file is damaged or incomplete", path)
	}
	info.Checksum = has
	s, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return info, fmt.Errorf("%s is not a readable etcd snapshot: %w", path, err)
	}
	info.Revision, info.Keys, info.Hash, info.StorageVersion = s.Revision, s.TotalKey, s.Hash, s.Version
	return info, nil
}

// verifyChecksum reports whether the file of size n carries a SHA-256 of its content at
// its end (etcd appends one so that the database size is a multiple of 512) and whether
// it matches.
func verifyChecksum(path string, n int64) (ok, has bool, err error) {
	if n%512 != sha256.Size {
		return false, false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n-sha256.Size); err != nil {
		return false, true, fmt.Errorf("reading %s: %w", path, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return false, true, fmt.Errorf("reading %s: %w", path, err)
	}
	return bytes.Equal(h.Sum(nil), want), true, nil
}

// RestoreOptions say how to restore a snapshot into a new data directory.
type RestoreOptions struct {
	// Snapshot is the file to restore.
	Snapshot string
	// DataDir is the new data directory: it must not exist or be empty.
	DataDir string
	// Name and PeerURL are those of the one member of the restored cluster: the --name
	// and --initial-advertise-peer-urls of the member that will run on DataDir.
	Name, PeerURL string
	// ClusterToken makes the cluster ID: a new token makes a new cluster, which no member
	// of the old one can join by mistake.
	ClusterToken string
	// FromDataDir says Snapshot is a member's own database file (member/snap/db), which
	// carries no checksum.
	FromDataDir bool
}

// RevisionBump is how far a restore moves the keyspace revision beyond the snapshot's,
// marking everything before compacted: every watcher (the apiservers' caches, the
// informers of every client) sees its revision compacted and lists again, instead of
// waiting for revisions that the restored keyspace would reuse with other content.
// Kubernetes' documentation advises a billion; at 10,000 writes a second that is more
// than a day of writes lost with the snapshot.
const RevisionBump = 1_000_000_000

// Restore writes a new data directory from a snapshot: one member, a new cluster ID, the
// revision bumped and compacted (RevisionBump). It is etcd's own restore code
// (etcdutl snapshot restore).
func Restore(o RestoreOptions) error {
	if o.Name == "" || o.PeerURL == "" || o.DataDir == "" || o.ClusterToken == "" {
		return errors.New("restoring etcd needs the member's name, peer URL, data directory and a cluster token")
	}
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        o.Snapshot,
		Name:                o.Name,
		OutputDataDir:       o.DataDir,
		PeerURLs:            []string{o.PeerURL},
		InitialCluster:      o.Name + "=" + o.PeerURL,
		InitialClusterToken: o.ClusterToken,
		SkipHashCheck:       o.FromDataDir,
		RevisionBump:        RevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return fmt.Errorf("restoring %s into %s: %w", o.Snapshot, o.DataDir, err)
	}
	return nil
}

// WALLocked says whether a process (an etcd member) holds the lock on a write-ahead log
// file of the data directory dataDir: etcd locks its log files while it runs.
func WALLocked(dataDir string) (bool, error) {
	files, err := filepath.Glob(filepath.Join(dataDir, "member", "wal", "*.wal"))
	if err != nil {
		return false, err
	}
	for _, f := range files {
		l, err := fileutil.TryLockFile(f, os.O_RDWR, 0)
		switch {
		case errors.Is(err, fileutil.ErrLocked):
			return true, nil
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return false, fmt.Errorf("checking the lock of %s: %w", f, err)
		}
		l.Close()
	}
	return false, nil
}
