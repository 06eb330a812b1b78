package probe

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// (g) The informer sees every ConfigMap the writer created.
func TestInformerSeesWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs := fake.NewClientset()
	inf, err := StartInformer(ctx, cs, "probe", "app=probe")
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Stop()
	started := time.Now()
	w, err := WriteConfigMaps(ctx, cs, "probe", "app=probe", 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(started); took < 400*time.Millisecond {
		t.Errorf("10 creates at 20/s took %s, want ~450ms", took)
	}
	if len(w.Created) != 10 || w.Sent != 10 {
		t.Fatalf("created %v of %d sent, want 10", w.Created, w.Sent)
	}
	cm, err := cs.CoreV1().ConfigMaps("probe").Get(ctx, w.Created[0], metav1.GetOptions{})
	if err != nil || cm.Labels["app"] != "probe" {
		t.Fatalf("the first ConfigMap: %v, labels %v", err, cm.Labels)
	}
	rep := inf.Check(ctx, w, 5*time.Second)
	t.Log(rep)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if missing := inf.Missing(append(w.Created, "never-created")); len(missing) != 1 || missing[0] != "never-created" {
		t.Errorf("Missing = %v, want [never-created]", missing)
	}
}

// (g) A ConfigMap the informer never saw is reported: the informer watches a second fake
// clientset that receives every create of the writer's clientset but the fourth (a lost event).
func TestInformerReportsMissedConfigMap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	writer, watched := fake.NewClientset(), fake.NewClientset()
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	writer.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		cm := a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap)
		if !strings.HasSuffix(cm.Name, "-3") {
			if err := watched.Tracker().Create(gvr, cm.DeepCopy(), cm.Namespace); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil // the writer's own tracker stores it too
	})
	inf, err := StartInformer(ctx, watched, "probe", "app=probe")
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Stop()
	w, err := WriteConfigMaps(ctx, writer, "probe", "app=probe", 6, 50)
	if err != nil {
		t.Fatal(err)
	}
	rep := inf.Check(ctx, w, time.Second)
	t.Log(rep)
	if len(rep.Missing) != 1 || rep.Missing[0] != w.Created[3] {
		t.Errorf("missing %v, want [%s]", rep.Missing, w.Created[3])
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "never saw 1 of 6") {
		t.Errorf("Err() = %v, want the missed ConfigMap", err)
	}
}

// A failed create is reported by the writer and is not expected of the informer.
func TestWriterReportsFailedCreates(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	calls := 0
	cs.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if calls == 2 {
			return true, nil, context.DeadlineExceeded
		}
		return false, nil, nil
	})
	w, err := WriteConfigMaps(ctx, cs, "probe", "app=probe", 3, 50)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 creates failed") || len(w.Created) != 2 || len(w.Failures) != 1 {
		t.Errorf("WriteConfigMaps = %v, created %v, failures %v", err, w.Created, w.Failures)
	}
	if _, err := WriteConfigMaps(ctx, cs, "probe", "not a label!", 3, 50); err == nil {
		t.Error("WriteConfigMaps accepted a bad label")
	}
}
