package operator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/test/apiserver"
)

// TestControlPlaneResource installs the CRD in a real kube-apiserver (the API tier) and
// checks what the operator relies on: the schema refuses what is not a ControlPlane,
// init's creation leaves an existing one alone, and a dry-run apply tells by the
// generation whether a workload would change.
func TestControlPlaneResource(t *testing.T) {
	srv := apiserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := apply.New(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Object(ctx, controlplane.CRD()); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := configtest.Config(t, nil)
	object := func(name string, change func(*controlplane.Spec)) *unstructured.Unstructured {
		cp := &controlplane.ControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: controlplane.SpecFrom(&cfg.Cluster)}
		if change != nil {
			change(&cp.Spec)
		}
		u, err := cp.Unstructured()
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	t.Run("init creates it once and leaves it alone after", func(t *testing.T) {
		created, err := a.Create(ctx, object(controlplane.Name, nil))
		if err != nil || !created {
			t.Fatalf("first create: %v, %v", created, err)
		}
		changed := object(controlplane.Name, func(s *controlplane.Spec) {
			s.APIServer.ExtraArgs = map[string]string{"v": "2"}
		})
		created, err = a.Create(ctx, changed)
		if err != nil || created {
			t.Fatalf("second create: %v, %v; want it left alone", created, err)
		}
		got, err := dyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cp, err := controlplane.FromUnstructured(got)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Spec.KubernetesVersion != cfg.Cluster.KubernetesVersion || len(cp.Spec.APIServer.ExtraArgs) != 0 {
			t.Errorf("the stored spec: %+v", cp.Spec)
		}
	})

	t.Run("the schema refuses what is not a ControlPlane", func(t *testing.T) {
		for name, tc := range map[string]struct {
			obj  *unstructured.Unstructured
			want string
		}{
			"a second one":         {object("other", nil), "named cluster"},
			"a version of no form": {object(controlplane.Name+"x", func(s *controlplane.Spec) { s.KubernetesVersion = "1.36" }), "kubernetesVersion"},
			"a flag with dashes": {object("flags", func(s *controlplane.Spec) {
				s.Scheduler.Component = config.Component{ExtraArgs: map[string]string{"--v": "2"}}
			}), "leading dashes"},
			"a soak of an hour": {object("soak", func(s *controlplane.Spec) { s.Rollout.SoakSeconds = new(int32(3600)) }), "soakSeconds"},
		} {
			_, err := dyn.Resource(controlplane.GroupVersionResource).Create(ctx, tc.obj, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want Invalid naming %q", name, err, tc.want)
			}
		}
	})

	t.Run("a dry-run apply raises the generation only for a change", func(t *testing.T) {
		workloads, err := manifests.Workloads(cfg.Cluster, []string{cfg.Node.AdvertiseAddress})
		if err != nil {
			t.Fatal(err)
		}
		ds := workloads[manifests.APIServer]
		if err := a.Object(ctx, ds); err != nil {
			t.Fatal(err)
		}
		live, err := srv.Client.AppsV1().DaemonSets(manifests.Namespace).Get(ctx, manifests.APIServer, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		same, err := a.DryRun(ctx, ds)
		if err != nil {
			t.Fatal(err)
		}
		spec := controlplane.SpecFrom(&cfg.Cluster)
		spec.APIServer.ExtraArgs = map[string]string{"v": "1"}
		changed, err := manifests.Workloads(spec.Configure(cfg.Cluster), []string{cfg.Node.AdvertiseAddress})
		if err != nil {
			t.Fatal(err)
		}
		other, err := a.DryRun(ctx, changed[manifests.APIServer])
		if err != nil {
			t.Fatal(err)
		}
		if same.GetGeneration() != live.Generation || other.GetGeneration() != live.Generation+1 {
			t.Errorf("generations: live %d, dry-run of the same %d, of a change %d", live.Generation, same.GetGeneration(), other.GetGeneration())
		}
		again, err := srv.Client.AppsV1().DaemonSets(manifests.Namespace).Get(ctx, manifests.APIServer, metav1.GetOptions{})
		if err != nil || again.Generation != live.Generation {
			t.Errorf("the dry-run changed the DaemonSet: %v, generation %d", err, again.Generation)
		}
	})
}

// TestTheOperatorMayPutBackOnlyTheControlPlanesWorkloads applies the operator's rendered
// Role and RoleBinding (the golden files that TestGolden pins to what selfkube renders)
// to a real kube-apiserver and acts as selfkube-controller's ServiceAccount: putting a
// deleted workload back is a server-side apply, which the apiserver authorizes as a
// create of that name, so the name-limited Role allows kube-proxy and refuses any other
// DaemonSet in kube-system.
func TestTheOperatorMayPutBackOnlyTheControlPlanesWorkloads(t *testing.T) {
	srv := apiserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"90-selfkube-controller-role.yaml", "91-selfkube-controller-rolebinding.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "manifests", "testdata", "default", "manifests", f))
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			t.Fatal(err)
		}
		gvr := rbacv1.SchemeGroupVersion.WithResource(strings.ToLower(u.GetKind()) + "s")
		if _, err := admin.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", f, err)
		}
	}
	asOperator := rest.CopyConfig(srv.Config)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:kube-system:selfkube-controller",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	op, err := dynamic.NewForConfig(asOperator)
	if err != nil {
		t.Fatal(err)
	}
	daemonSet := func(name string) *unstructured.Unstructured {
		labels := map[string]any{"app": name}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps/v1", "kind": "DaemonSet",
			"metadata": map[string]any{"name": name, "namespace": "kube-system"},
			"spec": map[string]any{
				"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec":     map[string]any{"containers": []any{map[string]any{"name": "c", "image": "registry.local/pause:3.10.2"}}},
				},
			},
		}}
	}
	ds := appsv1.SchemeGroupVersion.WithResource("daemonsets")
	putBack := func(name string) error {
		_, err := op.Resource(ds).Namespace("kube-system").Apply(ctx, name, daemonSet(name), metav1.ApplyOptions{FieldManager: apply.FieldManager, Force: true})
		return err
	}
	// Polled: the RBAC authorizer sees the new Role within moments.
	deadline := time.Now().Add(30 * time.Second)
	for err := putBack(manifests.ProxyName); err != nil; err = putBack(manifests.ProxyName) {
		if time.Now().After(deadline) {
			t.Fatalf("the operator putting back a deleted kube-proxy DaemonSet: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := putBack("not-selfkubes"); !apierrors.IsForbidden(err) {
		t.Errorf("the operator creating another DaemonSet in kube-system: %v, want Forbidden", err)
	}
}
