package manifests

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
)

func TestClusterInfo(t *testing.T) {
	caPEM := []byte("fake ca.crt\n")
	objs, err := ClusterInfo("10.0.0.1:6443", caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("ClusterInfo made %d objects, want a ConfigMap, a Role and a RoleBinding", len(objs))
	}
	cm, role, binding := objs[0].(*corev1.ConfigMap), objs[1].(*rbacv1.Role), objs[2].(*rbacv1.RoleBinding)
	for _, o := range objs {
		if gvk := o.GetObjectKind().GroupVersionKind(); gvk.Kind == "" || gvk.Version == "" {
			t.Errorf("%T has no apiVersion and kind: it cannot be applied as it is", o)
		}
	}

	// kubeadm's names: a stock `kubeadm join` and selfkube's discovery look for them.
	if cm.Namespace != "kube-public" || cm.Name != "cluster-info" || len(cm.Data) != 1 {
		t.Fatalf("ConfigMap = %s/%s with data %v", cm.Namespace, cm.Name, cm.Data)
	}
	kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		t.Fatalf("the kubeconfig does not load: %v", err)
	}
	if c := kc.Clusters[""]; len(kc.Clusters) != 1 || c == nil || c.Server != "https://10.0.0.1:6443" ||
		string(c.CertificateAuthorityData) != string(caPEM) || len(kc.AuthInfos) != 0 {
		t.Fatalf("kubeconfig = %+v", kc)
	}

	wantRules := []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"cluster-info"}}}
	if role.Namespace != "kube-public" || role.Name != "kubeadm:bootstrap-signer-clusterinfo" {
		t.Errorf("Role = %s/%s", role.Namespace, role.Name)
	}
	if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}
	wantRef := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kubeadm:bootstrap-signer-clusterinfo"}
	wantSubjects := []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "system:anonymous"}}
	if binding.Namespace != "kube-public" || binding.Name != role.Name || binding.RoleRef != wantRef ||
		!cmp.Equal(binding.Subjects, wantSubjects) {
		t.Errorf("RoleBinding = %+v", binding)
	}

	// The server is normalized, so both spellings give the same document (a re-apply
	// must not make the bootstrapsigner sign again).
	again, err := ClusterInfo("https://10.0.0.1:6443", caPEM)
	if err != nil || !cmp.Equal(again, objs) {
		t.Errorf("a second build differs (%v): %s", err, cmp.Diff(objs, again))
	}
	if _, err := ClusterInfo("http://10.0.0.1:6443", caPEM); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("an http server: error = %v, want it refused", err)
	}
}

// TestSelfHostedShipsClusterInfo: what init applies is ClusterInfo for the control-plane
// endpoint, so the API tests that apply ClusterInfo verify the shipped objects.
func TestSelfHostedShipsClusterInfo(t *testing.T) {
	cfg := customConfig(t)
	files := fakeFiles()
	want, err := ClusterInfo(cfg.Cluster.ControlPlaneEndpoint, files[FileCACert])
	if err != nil {
		t.Fatal(err)
	}
	assets, err := SelfHosted(cfg, files)
	if err != nil {
		t.Fatal(err)
	}
	// The shipped order is the apply order (files sorted), the Role first.
	byKind := map[string]runtime.Object{}
	for _, a := range assets {
		if strings.Contains(a.Path, "-cluster-info-") || strings.Contains(a.Path, "-bootstrap-signer-clusterinfo-") {
			byKind[a.Object.GetObjectKind().GroupVersionKind().Kind] = a.Object
		}
	}
	got := []runtime.Object{byKind["ConfigMap"], byKind["Role"], byKind["RoleBinding"]}
	if diff := cmp.Diff(want, got); len(byKind) != 3 || diff != "" {
		t.Errorf("the shipped cluster-info differs from ClusterInfo (-ClusterInfo +shipped):\n%s", diff)
	}
}
