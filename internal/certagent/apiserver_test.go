package certagent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/test/apiserver"
)

// TestTheAgentMayTouchOnlyTheControlPlanesCertificates applies the node agent's rendered
// RBAC (the golden files TestGolden pins to what selfkube renders) to a real
// kube-apiserver and asks its authorizer what the agent's ServiceAccount may do: update
// the three control-plane Secrets and roll their three workloads, and nothing else of the
// kind: no other Secret of kube-system (a bootstrap token's, a ServiceAccount token's, the
// encryption key's, the operator's), no other workload (its own DaemonSet, the
// operator's, CoreDNS, kube-proxy), nothing in another namespace, no Secret listed.
func TestTheAgentMayTouchOnlyTheControlPlanesCertificates(t *testing.T) {
	srv := apiserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "manifests", "testdata", "default", "manifests")
	for _, f := range []string{"80-selfkube-checkpointer-role.yaml", "81-selfkube-checkpointer-rolebinding.yaml",
		"80-selfkube-checkpointer-controlplane-clusterrole.yaml", "81-selfkube-checkpointer-controlplane-clusterrolebinding.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
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
	may := func(group, resource, sub, verb, namespace, name string) (bool, error) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:kube-system:selfkube-checkpointer",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: group, Resource: resource, Subresource: sub,
				Verb: verb, Namespace: namespace, Name: name},
		}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.Allowed, nil
	}
	type ask struct {
		group, resource, sub, verb, namespace, name string
		allowed                                     bool
	}
	asks := []ask{
		{"", "secrets", "", "update", "kube-system", "kube-apiserver", true},
		{"", "secrets", "", "update", "kube-system", "kube-controller-manager", true},
		{"", "secrets", "", "update", "kube-system", "kube-scheduler", true},
		{"apps", "daemonsets", "", "patch", "kube-system", "kube-apiserver", true},
		{"apps", "deployments", "", "patch", "kube-system", "kube-controller-manager", true},
		{"apps", "deployments", "", "patch", "kube-system", "kube-scheduler", true},
		{"", "configmaps", "", "get", "kube-system", "selfkube-config", true},
		{controlplane.Group, controlplane.Resource, "status", "patch", "", controlplane.Name, true},

		{"", "secrets", "", "get", "kube-system", "bootstrap-token-abcdef", false},
		{"", "secrets", "", "update", "kube-system", "bootstrap-token-abcdef", false},
		{"", "secrets", "", "update", "kube-system", "selfkube-controller-token", false},
		{"", "secrets", "", "create", "kube-system", "", false},
		{"", "secrets", "", "list", "kube-system", "", false},
		{"", "secrets", "", "delete", "kube-system", "kube-apiserver", false},
		{"", "secrets", "", "update", "default", "kube-apiserver", false},
		{"apps", "daemonsets", "", "patch", "kube-system", "selfkube-checkpointer", false},
		{"apps", "daemonsets", "", "patch", "kube-system", "kube-proxy", false},
		{"apps", "daemonsets", "", "update", "kube-system", "kube-apiserver", false},
		{"apps", "deployments", "", "patch", "kube-system", "selfkube-controller", false},
		{"apps", "deployments", "", "patch", "kube-system", "coredns", false},
		{"apps", "deployments", "", "patch", "default", "kube-scheduler", false},
		{"apps", "deployments", "", "create", "kube-system", "", false},
		{"", "configmaps", "", "update", "kube-system", "selfkube-config", false},
		{controlplane.Group, controlplane.Resource, "", "patch", "", controlplane.Name, false},
	}
	// The authorizer sees new bindings within moments: wait for the first allowed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := may(asks[0].group, asks[0].resource, asks[0].sub, asks[0].verb, asks[0].namespace, asks[0].name)
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's Role never took effect: %v %v", ok, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, a := range asks {
		ok, err := may(a.group, a.resource, a.sub, a.verb, a.namespace, a.name)
		if err != nil {
			t.Fatal(err)
		}
		if ok != a.allowed {
			what := fmt.Sprintf("%s %s.%s/%s %s/%s", a.verb, a.resource, a.group, a.sub, a.namespace, a.name)
			t.Errorf("the node agent may %s: %v, want %v", what, ok, a.allowed)
		}
	}
}
