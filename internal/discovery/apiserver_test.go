package discovery_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/discovery"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/test/apiserver"
)

// TestAPIServerWithBootstrapSigner runs discovery against a real kube-apiserver whose
// cluster-info is signed by the real bootstrapsigner of kube-controller-manager.
func TestAPIServerWithBootstrapSigner(t *testing.T) {
	kcm := filepath.Join(filepath.Dir(apiserver.BinariesFromEnv().APIServer), "kube-controller-manager")
	if _, err := os.Stat(kcm); err != nil {
		t.Skipf("kube-controller-manager not found at %s: run `make components` first", kcm)
	}
	srv := apiserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	poll := func(what string, cond func(ctx context.Context) (bool, error)) {
		t.Helper()
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	poll("namespace kube-public", func(ctx context.Context) (bool, error) {
		_, err := srv.Client.CoreV1().Namespaces().Get(ctx, "kube-public", metav1.GetOptions{})
		return err == nil, nil
	})

	caPEM, err := os.ReadFile(srv.Config.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pins, err := bootstrap.CAHashes(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster-info init ships, applied as init's apply phase applies it.
	clusterInfo, err := manifests.ClusterInfo(srv.Config.Host, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	applier, err := apply.New(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	applyClusterInfo := func() {
		t.Helper()
		for _, o := range clusterInfo {
			if err := applier.Object(ctx, o); err != nil {
				t.Fatalf("applying cluster-info: %v", err)
			}
		}
	}
	applyClusterInfo()
	tok, err := bootstrap.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := bootstrap.Create(ctx, srv.Client, bootstrap.TokenSpec{Token: tok}, time.Now()); err != nil {
		t.Fatalf("Create: %v", err)
	}

	startBootstrapSigner(t, kcm, srv.Config)

	t.Run("discovery succeeds once the signer has signed", func(t *testing.T) {
		var waits int
		opts := discovery.Options{RetryInterval: 200 * time.Millisecond, Timeout: 2 * time.Minute, Progress: func(string, ...any) { waits++ }}
		got, err := discovery.Fetch(ctx, srv.Config.Host, tok, pins, opts)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if got.Server != srv.Config.Host || string(got.CAData) != string(caPEM) {
			t.Fatalf("Fetch = %+v, want server %s and the test CA", got, srv.Config.Host)
		}
		t.Logf("discovered %s after %d retries", got.Server, waits)
	})

	t.Run("re-applying cluster-info keeps the signer's signature", func(t *testing.T) {
		before, err := srv.Client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		applyClusterInfo()
		after, err := srv.Client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != before.ResourceVersion || after.Data["jws-kubeconfig-"+tok.ID] == "" {
			t.Fatalf("applying cluster-info again changed the signed cluster-info: resourceVersion %s -> %s, keys %d -> %d",
				before.ResourceVersion, after.ResourceVersion, len(before.Data), len(after.Data))
		}
	})

	t.Run("wrong secret", func(t *testing.T) {
		wrong := bootstrap.Token{ID: tok.ID, Secret: strings.Repeat("0", 16)}
		_, err := discovery.Fetch(ctx, srv.Config.Host, wrong, pins, discovery.Options{RetryInterval: 200 * time.Millisecond, Timeout: time.Minute})
		if !errors.Is(err, discovery.ErrSignatureMismatch) {
			t.Fatalf("Fetch error = %v, want ErrSignatureMismatch", err)
		}
	})

	t.Run("wrong pin", func(t *testing.T) {
		wrongPin := "sha256:" + strings.Repeat("ab", 32)
		_, err := discovery.Fetch(ctx, srv.Config.Host, tok, []string{wrongPin}, discovery.Options{RetryInterval: 200 * time.Millisecond, Timeout: time.Minute})
		if !errors.Is(err, discovery.ErrCAHashMismatch) {
			t.Fatalf("Fetch error = %v, want ErrCAHashMismatch", err)
		}
	})

	t.Run("deleted token loses its signature", func(t *testing.T) {
		if err := bootstrap.Delete(ctx, srv.Client, tok.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		poll("the signer to drop the signature", func(ctx context.Context) (bool, error) {
			cm, err := srv.Client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			_, signed := cm.Data["jws-kubeconfig-"+tok.ID]
			return !signed, nil
		})
		_, err := discovery.Fetch(ctx, srv.Config.Host, tok, pins, discovery.Options{RetryInterval: 100 * time.Millisecond, Timeout: time.Second})
		if !errors.Is(err, discovery.ErrTimeout) || !errors.Is(err, discovery.ErrNoSignature) {
			t.Fatalf("Fetch error = %v, want a timeout after ErrNoSignature", err)
		}
	})
}

// startBootstrapSigner runs kube-controller-manager with only the bootstrapsigner
// controller until the test ends.
func startBootstrapSigner(t *testing.T, kcm string, c *rest.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthority: c.CAFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: c.CertFile, ClientKey: c.KeyFile}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	kubeconfig := filepath.Join(dir, "admin.conf")
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "kube-controller-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kcm,
		"--kubeconfig="+kubeconfig,
		"--controllers=bootstrap-signer-controller",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kube-controller-manager: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				if len(out) > 16<<10 {
					out = out[len(out)-16<<10:]
				}
				t.Logf("--- kube-controller-manager log ---\n%s", out)
			}
		}
	})
}
