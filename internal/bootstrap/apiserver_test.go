package bootstrap_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/test/apiserver"
)

// waitForNamespace waits until the API server's system-namespaces controller has created ns.
func waitForNamespace(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s never appeared: %v", ns, err)
	}
}

func TestAPIServer(t *testing.T) {
	srv := apiserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitForNamespace(ctx, t, srv.Client, "kube-system")
	waitForNamespace(ctx, t, srv.Client, "kube-public")
	now := time.Now().Truncate(time.Second) // expirations are stored in whole seconds

	tok, err := bootstrap.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("create and list a token", func(t *testing.T) {
		if err := bootstrap.Create(ctx, srv.Client, bootstrap.TokenSpec{Token: tok, Description: "api test"}, now); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := bootstrap.Create(ctx, srv.Client, bootstrap.TokenSpec{Token: tok}, now); !errors.Is(err, bootstrap.ErrTokenExists) {
			t.Fatalf("second Create: error = %v, want ErrTokenExists", err)
		}
		infos, err := bootstrap.List(ctx, srv.Client, now)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(infos) != 1 {
			t.Fatalf("List = %+v, want one token", infos)
		}
		got := infos[0]
		if got.ID != tok.ID || got.TTL != bootstrap.DefaultTTL || got.Expired || got.Problem != "" || got.Description != "api test" ||
			strings.Join(got.Usages, ",") != "authentication,signing" || strings.Join(got.Groups, ",") != bootstrap.DefaultGroup {
			t.Fatalf("List = %+v", got)
		}
	})

	t.Run("stock kubeadm reads the token", func(t *testing.T) {
		kubeadm := filepath.Join(filepath.Dir(apiserver.BinariesFromEnv().APIServer), "kubeadm")
		if _, err := os.Stat(kubeadm); err != nil {
			t.Skipf("kubeadm not found at %s", kubeadm)
		}
		kubeconfig := writeAdminKubeconfig(t, srv.Config)
		out, err := exec.CommandContext(ctx, kubeadm, "token", "list", "--kubeconfig", kubeconfig).CombinedOutput()
		if err != nil {
			t.Fatalf("kubeadm token list: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), tok.ID) || !strings.Contains(string(out), "authentication,signing") ||
			!strings.Contains(string(out), bootstrap.DefaultGroup) || strings.Contains(string(out), "<invalid>") {
			t.Fatalf("kubeadm token list does not show the token as valid:\n%s", out)
		}
	})

	t.Run("the shipped cluster-info is idempotent and readable anonymously", func(t *testing.T) {
		caPEM, err := os.ReadFile(srv.Config.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		server := srv.Config.Host
		// What init's apply phase applies: the shipped objects, through its applier.
		objs, err := manifests.ClusterInfo(server, caPEM)
		if err != nil {
			t.Fatal(err)
		}
		applier, err := apply.New(srv.Config)
		if err != nil {
			t.Fatal(err)
		}
		applyAll := func() {
			t.Helper()
			for _, o := range objs {
				if err := applier.Object(ctx, o); err != nil {
					t.Fatalf("applying cluster-info: %v", err)
				}
			}
		}
		applyAll()
		versions := func() []string {
			cm, err1 := srv.Client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
			role, err2 := srv.Client.RbacV1().Roles("kube-public").Get(ctx, manifests.ClusterInfoRBACName, metav1.GetOptions{})
			rb, err3 := srv.Client.RbacV1().RoleBindings("kube-public").Get(ctx, manifests.ClusterInfoRBACName, metav1.GetOptions{})
			if err := errors.Join(err1, err2, err3); err != nil {
				t.Fatalf("reading cluster-info and its RBAC: %v", err)
			}
			for _, m := range [][]metav1.ManagedFieldsEntry{cm.ManagedFields, role.ManagedFields, rb.ManagedFields} {
				if len(m) != 1 || m[0].Manager != apply.FieldManager || m[0].Operation != metav1.ManagedFieldsOperationApply {
					t.Fatalf("managed fields = %+v, want one apply by %s", m, apply.FieldManager)
				}
			}
			return []string{cm.ResourceVersion, role.ResourceVersion, rb.ResourceVersion}
		}
		first := versions()
		applyAll()
		if second := versions(); strings.Join(first, ",") != strings.Join(second, ",") {
			t.Fatalf("applying cluster-info again changed resource versions %v to %v", first, second)
		}

		anonymous, err := kubernetes.NewForConfig(&rest.Config{Host: srv.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAFile: srv.Config.CAFile}})
		if err != nil {
			t.Fatal(err)
		}
		cm, err := anonymous.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("anonymous GET cluster-info: %v", err)
		}
		cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
		if err != nil || cfg.Clusters[""] == nil || cfg.Clusters[""].Server != server || string(cfg.Clusters[""].CertificateAuthorityData) != string(caPEM) {
			t.Fatalf("anonymous cluster-info kubeconfig = %+v, %v", cfg, err)
		}
		// The binding is for cluster-info only.
		if _, err := anonymous.CoreV1().ConfigMaps("kube-public").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("anonymous LIST configmaps: error = %v, want Forbidden", err)
		}
		if _, err := anonymous.CoreV1().Secrets("kube-system").Get(ctx, bootstrap.SecretName(tok.ID), metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("anonymous GET of the token Secret: error = %v, want Forbidden", err)
		}
	})

	t.Run("delete the token", func(t *testing.T) {
		if err := bootstrap.Delete(ctx, srv.Client, tok.String()); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := bootstrap.Delete(ctx, srv.Client, tok.ID); !errors.Is(err, bootstrap.ErrTokenNotFound) {
			t.Fatalf("second Delete: error = %v, want ErrTokenNotFound", err)
		}
		infos, err := bootstrap.List(ctx, srv.Client, now)
		if err != nil || len(infos) != 0 {
			t.Fatalf("List after Delete = %+v, %v", infos, err)
		}
	})
}

// writeAdminKubeconfig writes a kubeconfig for the test server's admin credentials.
func writeAdminKubeconfig(t *testing.T, c *rest.Config) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthority: c.CAFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: c.CertFile, ClientKey: c.KeyFile}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "admin.conf")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
