package kubeconfig

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/cert"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/pki"
)

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func opts(dryRun bool) pki.Options {
	return pki.Options{DryRun: dryRun, Now: func() time.Time { return testNow }}
}

// assets makes an asset directory with a PKI and returns its tls/ and auth/ paths.
func assets(t testing.TB, cfg *config.Config) (pkiDir, authDir string) {
	t.Helper()
	dir := t.TempDir()
	pkiDir, authDir = filepath.Join(dir, pki.Dir), filepath.Join(dir, Dir)
	if _, err := pki.Ensure(pkiDir, cfg, opts(false)); err != nil {
		t.Fatal(err)
	}
	return pkiDir, authDir
}

func TestEnsureIdentities(t *testing.T) {
	cfg := configtest.Config(t, func(c *config.Config) { c.Cluster.ControlPlaneEndpoint = "api.example.com:8443" })
	pkiDir, authDir := assets(t, cfg)
	results, err := Ensure(authDir, pkiDir, cfg, opts(false))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 5 {
		t.Errorf("got %d results, want 5", len(results))
	}
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := cert.NewPoolFromBytes(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, cn string
		org      []string
	}{
		{"admin.conf", "kubernetes-admin", []string{"kubeadm:cluster-admins"}},
		{"super-admin.conf", "kubernetes-super-admin", []string{"system:masters"}},
		{"controller-manager.conf", "system:kube-controller-manager", nil},
		{"scheduler.conf", "system:kube-scheduler", nil},
		{"kubelet.conf", "system:node:node1", []string{"system:nodes"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(authDir, tc.file)
			if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("stat %s: %v, want mode 0600", path, err)
			}
			kc, err := clientcmd.LoadFromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Build a client config the way kubectl does and look at what it would use.
			rc, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			if rc.Host != "https://api.example.com:8443" {
				t.Errorf("server %q, want https://api.example.com:8443", rc.Host)
			}
			if string(rc.CAData) != string(caPEM) {
				t.Error("embedded CA is not tls/ca.crt")
			}
			certs, err := cert.ParseCertsPEM(rc.CertData)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pki.ParseKey(rc.KeyData); err != nil {
				t.Fatalf("client key: %v", err)
			}
			c := certs[0]
			if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.Organization, tc.org) {
				t.Errorf("identity CN=%q O=%q, want CN=%q O=%q", c.Subject.CommonName, c.Subject.Organization, tc.cn, tc.org)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: testNow.Add(time.Minute),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client certificate does not verify against the CA as a client: %v", err)
			}
			if d := c.NotAfter.Sub(c.NotBefore) - config.DefaultLeafValidity; d < -time.Minute || d > time.Minute {
				t.Errorf("valid for %s, want %s", c.NotAfter.Sub(c.NotBefore), config.DefaultLeafValidity)
			}
		})
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

func TestEnsureIsIdempotent(t *testing.T) {
	cfg := configtest.Config(t, nil)
	pkiDir, authDir := assets(t, cfg)
	if _, err := Ensure(authDir, pkiDir, cfg, opts(false)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, authDir)
	results, err := Ensure(authDir, pkiDir, cfg, opts(false))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Action != pki.Existing {
			t.Errorf("second run: %s", r)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, authDir)); diff != "" {
		t.Errorf("second run changed files (-before +after):\n%s", diff)
	}
}

func TestEnsureRejectsWhatDiffers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(cfg *config.Config) // before the first run
		change  func(t *testing.T, cfg *config.Config, pkiDir, authDir string) (newPKIDir string)
		wantErr []string
	}{
		{
			name: "other server",
			change: func(t *testing.T, cfg *config.Config, pkiDir, authDir string) string {
				cfg.Cluster.ControlPlaneEndpoint = "api.example.com:6443"
				return pkiDir
			},
			wantErr: []string{"AUTH/admin.conf: server is https://192.0.2.10:6443, expected https://api.example.com:6443",
				"set controlPlaneEndpoint back", "AUTH/kubelet.conf: server is"},
		},
		{
			name: "other CA",
			change: func(t *testing.T, cfg *config.Config, pkiDir, authDir string) string {
				other, _ := assets(t, cfg)
				return other
			},
			wantErr: []string{"AUTH/scheduler.conf: certificate-authority-data does not hold the cluster CA, client certificate: not signed by the CA ca"},
		},
		{
			name: "other node name",
			change: func(t *testing.T, cfg *config.Config, pkiDir, authDir string) string {
				cfg.Node.Name = "node2"
				return pkiDir
			},
			wantErr: []string{`AUTH/kubelet.conf: client certificate: common name is "system:node:node1", expected "system:node:node2"`},
		},
		{
			name:  "expired client certificate",
			setup: func(cfg *config.Config) { cfg.Cluster.Certificates.Validity.Duration = time.Hour },
			change: func(t *testing.T, cfg *config.Config, pkiDir, authDir string) string {
				return pkiDir // the second run is 2h later
			},
			wantErr: []string{"AUTH/controller-manager.conf: client certificate: expired on"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configtest.Config(t, nil)
			pkiDir, authDir := assets(t, cfg)
			if tc.setup != nil {
				tc.setup(cfg)
			}
			if _, err := Ensure(authDir, pkiDir, cfg, opts(false)); err != nil {
				t.Fatal(err)
			}
			pkiDir = tc.change(t, cfg, pkiDir, authDir)
			before := snapshot(t, authDir)
			for _, dryRun := range []bool{true, false} {
				o := pki.Options{DryRun: dryRun, Now: func() time.Time { return testNow.Add(2 * time.Hour) }}
				_, err := Ensure(authDir, pkiDir, cfg, o)
				if err == nil {
					t.Fatalf("dry run %v: Ensure succeeded, want an error", dryRun)
				}
				for _, want := range tc.wantErr {
					if want = strings.ReplaceAll(want, "AUTH", authDir); !strings.Contains(err.Error(), want) {
						t.Errorf("dry run %v: error does not contain %q:\n%v", dryRun, want, err)
					}
				}
			}
			if diff := cmp.Diff(before, snapshot(t, authDir)); diff != "" {
				t.Errorf("a failed run changed files (-before +after):\n%s", diff)
			}
		})
	}
}

func TestEnsureDryRun(t *testing.T) {
	cfg := configtest.Config(t, nil)
	t.Run("without a CA", func(t *testing.T) {
		dir := t.TempDir()
		pkiDir, authDir := filepath.Join(dir, pki.Dir), filepath.Join(dir, Dir)
		if _, err := pki.Ensure(pkiDir, cfg, opts(true)); err != nil {
			t.Fatal(err)
		}
		results, err := Ensure(authDir, pkiDir, cfg, opts(true))
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 5 {
			t.Errorf("got %d results, want 5", len(results))
		}
		for _, r := range results {
			if r.Action != pki.Generated {
				t.Errorf("%s, want %s", r, pki.Generated)
			}
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("dry run wrote %v", entries)
		}
		if _, err := Ensure(authDir, pkiDir, cfg, opts(false)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a real run without a CA: %v, want an error matching fs.ErrNotExist", err)
		}
	})
	t.Run("with a CA", func(t *testing.T) {
		pkiDir, authDir := assets(t, cfg)
		planned, err := Ensure(authDir, pkiDir, cfg, opts(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(authDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("dry run created %s", authDir)
		}
		done, err := Ensure(authDir, pkiDir, cfg, opts(false))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(done, planned); diff != "" {
			t.Errorf("plan differs from the real run (-real +planned):\n%s", diff)
		}
	})
}
