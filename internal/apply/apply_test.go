package apply_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/test/apiserver"
)

// TestApplier runs the applier init uses against a real kube-apiserver (the API tier).
func TestApplier(t *testing.T) {
	srv := apiserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := apply.New(srv.Config)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("stores with selfkube as the only manager", func(t *testing.T) {
		if err := a.Object(ctx, daemonSet("kube-scheduler")); err != nil {
			t.Fatal(err)
		}
		got, err := srv.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-scheduler", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the applied DaemonSet: %v", err)
		}
		if m := managers(got.ManagedFields); m != apply.FieldManager+"/Apply" {
			t.Errorf("managed fields = %s, want only %s/Apply", m, apply.FieldManager)
		}
	})

	t.Run("applying again is a no-op", func(t *testing.T) {
		ds := daemonSet("kube-proxy")
		cm := configMap("settings", map[string]string{"a": "1"})
		if err := a.Object(ctx, ds); err != nil {
			t.Fatal(err)
		}
		if err := a.Object(ctx, cm); err != nil {
			t.Fatal(err)
		}
		versions := func() string {
			d, err1 := srv.Client.AppsV1().DaemonSets(ds.Namespace).Get(ctx, ds.Name, metav1.GetOptions{})
			c, err2 := srv.Client.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
			if err1 != nil || err2 != nil {
				t.Fatalf("reading back: %v, %v", err1, err2)
			}
			return d.ResourceVersion + "," + c.ResourceVersion
		}
		before := versions()
		for range 2 {
			if err := a.Object(ctx, ds); err != nil {
				t.Fatal(err)
			}
			if err := a.Object(ctx, cm); err != nil {
				t.Fatal(err)
			}
		}
		if after := versions(); after != before {
			t.Errorf("applying the same objects again wrote them: resource versions %s -> %s", before, after)
		}
	})

	t.Run("takes over what another manager set, keeps what it added", func(t *testing.T) {
		// Someone edited a field selfkube sets and added a key of their own (as the
		// bootstrapsigner adds signatures to cluster-info).
		edited := configMap("edited", map[string]string{"owned": "theirs", "added": "x"})
		if _, err := srv.Client.CoreV1().ConfigMaps(edited.Namespace).Create(ctx, edited, metav1.CreateOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Object(ctx, configMap("edited", map[string]string{"owned": "ours"})); err != nil {
			t.Fatalf("a conflict was not forced: %v", err)
		}
		got, err := srv.Client.CoreV1().ConfigMaps(edited.Namespace).Get(ctx, edited.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Data["owned"] != "ours" || got.Data["added"] != "x" {
			t.Errorf("data = %v, want owned=ours (forced) and added=x (kept)", got.Data)
		}
	})

	t.Run("a CRD then its custom resource in one pass", func(t *testing.T) {
		crd, widget := widgetCRD(t), widgetObject("one")
		if err := a.Object(ctx, crd); err != nil {
			t.Fatalf("applying the CRD: %v", err)
		}
		if err := a.Object(ctx, widget); err != nil {
			t.Fatalf("applying a Widget right after its CRD: %v", err)
		}
		gvr := schema.GroupVersionResource{Group: widgetGroup, Version: "v1", Resource: "widgets"}
		dyn, err := dynamic.NewForConfig(srv.Config)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dyn.Resource(gvr).Namespace("default").Get(ctx, "one", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the Widget back: %v", err)
		}
		if size, _, _ := unstructured.NestedInt64(got.Object, "spec", "size"); size != 3 {
			t.Errorf("Widget spec = %v", got.Object["spec"])
		}
	})

	t.Run("refuses what the API refuses, naming it", func(t *testing.T) {
		noContainers := daemonSet("empty")
		noContainers.Spec.Template.Spec.Containers = nil
		badSelector := daemonSet("mismatch")
		badSelector.Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		for _, ds := range []*appsv1.DaemonSet{noContainers, badSelector} {
			err := a.Object(ctx, ds)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "DaemonSet kube-system/"+ds.Name) {
				t.Errorf("applying DaemonSet %s = %v, want an Invalid error naming it", ds.Name, err)
			}
			if _, err := srv.Client.AppsV1().DaemonSets("kube-system").Get(ctx, ds.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the refused DaemonSet %s exists (%v)", ds.Name, err)
			}
		}
	})

	t.Run("refuses an unknown kind and a missing kind", func(t *testing.T) {
		unknown := &unstructured.Unstructured{}
		unknown.SetAPIVersion("selfkube.io/v1alpha1")
		unknown.SetKind("NoSuchKind")
		unknown.SetName("x")
		if err := a.Object(ctx, unknown); err == nil || !strings.Contains(err.Error(), "NoSuchKind x") {
			t.Errorf("applying an unknown kind = %v, want an error naming it", err)
		}
		untyped := daemonSet("no-type-meta")
		untyped.TypeMeta = metav1.TypeMeta{}
		if err := a.Object(ctx, untyped); err == nil || !strings.Contains(err.Error(), "apiVersion and kind must be set") {
			t.Errorf("applying without apiVersion and kind = %v, want it refused", err)
		}
	})
}

func managers(entries []metav1.ManagedFieldsEntry) string {
	var m []string
	for _, e := range entries {
		m = append(m, fmt.Sprintf("%s/%s", e.Manager, e.Operation))
	}
	return strings.Join(m, ",")
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
					Containers:  []corev1.Container{{Name: name, Image: "registry.local/" + name + ":v1.36.3"}},
				},
			},
		},
	}
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Data:       data,
	}
}

const widgetGroup = "tests.selfkube.io"

func widgetCRD(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	const doc = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.` + widgetGroup + `
spec:
  group: ` + widgetGroup + `
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func widgetObject(name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"size": int64(3)}}}
	u.SetAPIVersion(widgetGroup + "/v1")
	u.SetKind("Widget")
	u.SetName(name)
	u.SetNamespace("default")
	return u
}
