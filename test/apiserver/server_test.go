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

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

	t.Run("dry-run apply of a valid DaemonSet stores nothing", func(t *testing.T) {
		if err := srv.ApplyDryRun(ctx, daemonSet("kube-apiserver")); err != nil {
			t.Fatalf("dry-run apply: %v", err)
		}
		_, err := srv.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-apiserver", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("getting the dry-run DaemonSet = %v, want NotFound", err)
		}
	})

	t.Run("dry-run apply rejects invalid objects", func(t *testing.T) {
		noContainers := daemonSet("empty")
		noContainers.Spec.Template.Spec.Containers = nil
		badSelector := daemonSet("mismatch")
		badSelector.Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		for name, tc := range map[string]struct {
			obj   *appsv1.DaemonSet
			check func(error) bool
		}{
			"DaemonSet without containers":                 {noContainers, apierrors.IsInvalid},
			"DaemonSet whose selector misses its template": {badSelector, apierrors.IsInvalid},
		} {
			t.Run(name, func(t *testing.T) {
				err := srv.ApplyDryRun(ctx, tc.obj)
				if !tc.check(err) {
					t.Errorf("dry-run apply = %v, want an Invalid error", err)
				}
			})
		}
		unknown := &unstructured.Unstructured{}
		unknown.SetAPIVersion("selfkube.io/v1alpha1")
		unknown.SetKind("NoSuchKind")
		unknown.SetName("x")
		if err := srv.ApplyDryRun(ctx, unknown); err == nil || !strings.Contains(err.Error(), "finding the resource") {
			t.Errorf("dry-run apply of an unknown kind = %v, want a mapping error", err)
		}
		untyped := daemonSet("no-type-meta")
		untyped.TypeMeta = metav1.TypeMeta{}
		if err := srv.ApplyDryRun(ctx, untyped); err == nil || !strings.Contains(err.Error(), "apiVersion and kind must be set") {
			t.Errorf("dry-run apply without apiVersion and kind = %v, want it refused", err)
		}
	})

	t.Run("apply stores with the selfkube field manager", func(t *testing.T) {
		stored, err := srv.Apply(ctx, daemonSet("kube-scheduler"))
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if stored.GetUID() == "" {
			t.Errorf("Apply returned %v, want the stored object", stored.Object)
		}
		got, err := srv.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-scheduler", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the applied DaemonSet: %v", err)
		}
		var managers []string
		for _, f := range got.ManagedFields {
			managers = append(managers, fmt.Sprintf("%s/%s", f.Manager, f.Operation))
		}
		if len(managers) != 1 || managers[0] != FieldManager+"/Apply" {
			t.Errorf("managed fields = %v, want only %s/Apply", managers, FieldManager)
		}
	})
}

func daemonSet(name string) *appsv1.DaemonSet {
	labels := map[string]string{"component": name}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork: true,
					Containers: []corev1.Container{{
						Name:    name,
						Image:   "registry.local/" + name + ":v1.36.3",
						Command: []string{name},
					}},
				},
			},
		},
	}
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
