package apiserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServer(t *testing.T) {
	srv := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("namespace and ConfigMap round trip", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "selfkube-test"}}
		if _, err := srv.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace: %v", err)
		}
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns.Name},
			Data:       map[string]string{"cluster": "selfkube"},
		}
		if _, err := srv.Client.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating ConfigMap: %v", err)
		}
		got, err := srv.Client.CoreV1().ConfigMaps(ns.Name).Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading ConfigMap back: %v", err)
		}
		if got.Data["cluster"] != "selfkube" || got.UID == "" {
			t.Errorf("ConfigMap read back = data %v uid %q, want data cluster=selfkube and a UID", got.Data, got.UID)
		}
	})
}

// failingTB is a testing.TB whose test has failed; it runs its cleanups when asked and keeps
// what was logged.
type failingTB struct {
	testing.TB
	cleanups []func()
	logs     []string
	errs     []string
}

func (f *failingTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *failingTB) Failed() bool      { return true }
func (f *failingTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *failingTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *failingTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestCleanupAfterFailure(t *testing.T) {
	tb := &failingTB{TB: t}
	srv := Start(tb)
	var pids []int
	for _, p := range srv.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	if len(pids) != 2 {
		t.Fatalf("Start ran %d processes, want etcd and kube-apiserver", len(pids))
	}

	tb.runCleanups()

	if len(tb.errs) > 0 {
		t.Errorf("cleanup reported errors: %v", tb.errs)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after cleanup (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(srv.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after cleanup (stat: %v)", srv.Dir, err)
	}
	logs := strings.Join(tb.logs, "\n")
	for _, want := range []string{"of the etcd log", "of the kube-apiserver log", "Serving securely"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the failed test's output lacks %q; it was:\n%.2000s", want, logs)
		}
	}
}
