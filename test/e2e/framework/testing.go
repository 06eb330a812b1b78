package framework

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
)

// NewForTest returns a harness for test t. It skips the test when not running as root, and
// fails it when the cached components are missing. When t ends, node logs are copied to
// the artifacts directory if t failed, every node is deleted, and the test fails if
// anything of the harness is left on the machine. SIGINT and SIGTERM clean up too.
func NewForTest(t *testing.T) *Harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real-node e2e tests need root (namespaces, cgroups, mounts): run `sudo make e2e`")
	}
	cfg := ConfigFromEnv()
	if err := cfg.Check(); err != nil {
		t.Fatalf("real nodes cannot run: %v", err)
	}
	h, err := New(cfg, t.Logf)
	if err != nil {
		t.Fatalf("creating the node harness: %v", err)
	}
	if left := h.Leftovers(); len(left) > 0 {
		t.Logf("removing leftovers of an earlier run: %v", left)
		if err := h.Cleanup(); err != nil {
			t.Fatalf("removing leftovers of an earlier run: %v; try `make clean-nodes`", err)
		}
	}
	CleanupOnSignal(h)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SELFKUBE_E2E_KEEP_LOGS") != "" {
			dir := filepath.Join(cfg.ArtifactsDir, artifactName(t.Name()))
			if err := h.CollectArtifacts(dir); err != nil {
				t.Logf("collecting node logs: %v", err)
			}
			t.Logf("node logs: %s", dir)
		}
		if err := h.DownAll(); err != nil {
			t.Errorf("deleting nodes: %v", err)
		}
		if left := h.Leftovers(); len(left) > 0 {
			t.Errorf("the harness left things behind: %v", left)
			_ = h.Cleanup()
		}
	})
	return h
}

// CollectArtifacts copies the logs of every node to dir.
func (h *Harness) CollectArtifacts(dir string) error {
	nodes, err := h.Nodes()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if err := n.CollectLogs(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("copying node logs to %s: %v", dir, errs)
	}
	return nil
}

var artifactUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func artifactName(testName string) string { return artifactUnsafe.ReplaceAllString(testName, "_") }

var signalOnce sync.Once

// CleanupOnSignal deletes every node of h and exits when the process gets SIGINT or SIGTERM,
// so an interrupted run leaves nothing behind.
func CleanupOnSignal(h *Harness) {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-ch
			fmt.Fprintf(os.Stderr, "\n%s: deleting nodes before exiting\n", s)
			if err := h.Cleanup(); err != nil {
				fmt.Fprintf(os.Stderr, "cleanup: %v; run `make clean-nodes`\n", err)
			}
			os.Exit(130)
		}()
	})
}
