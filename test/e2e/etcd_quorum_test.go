//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/test/e2e/framework"
)

// quorumWatch samples every etcd member's status four times a second, each bounded to a
// second, until stopped. The quorum is the members that answer: a majority of them keeps
// the cluster's data writable. A sample where none of them saw a leader is an election
// under way (a restart the leader did not hand its leadership on before, or a member
// starved of CPU for an election timeout): it is counted and said, not a loss of quorum.
type quorumWatch struct {
	mu      sync.Mutex
	samples int
	// fewest members answering in one sample, and the sample where that was.
	fewest int
	when   time.Time
	down   map[string]int // samples a member did not answer in
	// leaderless counts the samples where no member that answered saw a leader.
	leaderless int
	stop       func()
	done       chan struct{}
}

func watchQuorum(ctx context.Context, t *testing.T, pkiDir string, endpoints []string) *quorumWatch {
	t.Helper()
	c, err := etcd.Dial(endpoints, pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &quorumWatch{fewest: len(endpoints), down: map[string]int{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer c.Close()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			answering, led := 0, 0
			var down []string
			for _, ep := range endpoints {
				sctx, scancel := context.WithTimeout(ctx, time.Second)
				err := c.Healthy(sctx, ep)
				scancel()
				switch {
				case err == nil:
					answering++
					led++
				case errors.Is(err, etcd.ErrNoLeader):
					answering++
				default:
					down = append(down, ep)
				}
			}
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.samples++
			for _, ep := range down {
				w.down[ep]++
			}
			if answering < w.fewest {
				w.fewest, w.when = answering, time.Now()
			}
			if led == 0 {
				w.leaderless++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// finish stops the sampling and says what it saw.
func (w *quorumWatch) finish() string {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d samples; fewest members answering in one sample: %d; samples each member was down in: %v; samples without a leader (an election): %d",
		w.samples, w.fewest, w.down, w.leaderless)
}

// etcdRuns checks that the etcd static pod on n has flag in its command.
func etcdRuns(n *framework.Node, flag string) error {
	data, err := os.ReadFile(n.HostPath("/etc/kubernetes/manifests/etcd.yaml"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(data), "- "+flag+"\n") {
		return fmt.Errorf("its etcd static pod lacks %s", flag)
	}
	return nil
}

// checkSnapshot checks that the status names a snapshot taken before generation gen on
// a node of nodes, whose file is there, 0600 in a 0700 directory.
func checkSnapshot(t *testing.T, cp *controlplane.ControlPlane, gen int64, nodes map[string]*framework.Node) {
	t.Helper()
	if cp.Status.Etcd == nil {
		t.Fatalf("no status.etcd: no snapshot named")
	}
	found := 0
	for name, sn := range cp.Status.Etcd.Snapshots {
		if sn.Generation != gen || sn.Error != "" {
			continue
		}
		n, ok := nodes[name]
		if !ok {
			t.Errorf("a snapshot reported for node %s, which is not a node of the test", name)
			continue
		}
		fi, err := os.Stat(n.HostPath(sn.Path))
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != sn.Size || sn.Size == 0 {
			t.Errorf("node %s: snapshot %s: %v %v; want a 0600 file of %d bytes", name, sn.Path, fi, err, sn.Size)
			continue
		}
		if di, err := os.Stat(filepath.Dir(n.HostPath(sn.Path))); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("node %s: snapshot directory: %v %v, want 0700", name, di, err)
		}
		found++
	}
	if found == 0 {
		t.Errorf("no snapshot of generation %d named in the status: %+v", gen, cp.Status.Etcd.Snapshots)
	}
}
