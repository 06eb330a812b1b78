package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/cert"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/config/configtest"
)

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func clock(t time.Time) Options { return Options{Now: func() time.Time { return t }} }

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := cert.CertsFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// snapshot reads every file under dir, by path relative to dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = string(b)
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return files
}

// The expectations below come from the design (kubeadm's names and identities), not
// from Specs, so that a wrong spec fails here.
var wantLeaves = []struct {
	name, ca, cn string
	org          []string
	eku          []x509.ExtKeyUsage
}{
	{"apiserver", "ca", "kube-apiserver", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	{"apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	{"front-proxy-client", "front-proxy-ca", "front-proxy-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	{"etcd/server", "etcd/ca", "node1", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	{"etcd/peer", "etcd/ca", "node1", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	{"etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	{"apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
}

func TestEnsureGeneratesAVerifiablePKI(t *testing.T) {
	for _, alg := range []string{config.KeyAlgorithmECDSAP256, config.KeyAlgorithmRSA2048} {
		t.Run(alg, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			caValidity, validity := 5*365*24*time.Hour, 90*24*time.Hour
			cfg := configtest.Config(t, func(c *config.Config) {
				c.Cluster.Certificates.KeyAlgorithm = alg
				c.Cluster.Certificates.CAValidity = &metav1.Duration{Duration: caValidity}
				c.Cluster.Certificates.Validity = &metav1.Duration{Duration: validity}
			})
			results, err := Ensure(dir, cfg, clock(testNow))
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != 22 {
				t.Errorf("got %d results, want 22 (11 certificates or key pairs, two files each)", len(results))
			}
			for _, r := range results {
				if r.Action != Generated {
					t.Errorf("%s: %s, want %s", r.Path, r.Action, Generated)
				}
			}

			for _, ca := range []string{"ca", "front-proxy-ca", "etcd/ca"} {
				c := loadCert(t, filepath.Join(dir, ca+".crt"))
				if !c.IsCA || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature {
					t.Errorf("%s: IsCA=%v KeyUsage=%v, want a CA with CertSign|CRLSign|DigitalSignature", ca, c.IsCA, c.KeyUsage)
				}
				if d := c.NotAfter.Sub(c.NotBefore) - caValidity; d < -time.Minute || d > time.Minute {
					t.Errorf("%s: valid for %s, want %s", ca, c.NotAfter.Sub(c.NotBefore), caValidity)
				}
			}
			for _, w := range wantLeaves {
				t.Run(w.name, func(t *testing.T) {
					leaf := loadCert(t, filepath.Join(dir, w.name+".crt"))
					roots := x509.NewCertPool()
					roots.AddCert(loadCert(t, filepath.Join(dir, w.ca+".crt")))
					for _, eku := range w.eku {
						if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: testNow.Add(time.Hour),
							KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
							t.Errorf("does not verify against %s for usage %v: %v", w.ca, eku, err)
						}
					}
					if diff := cmp.Diff(w.eku, leaf.ExtKeyUsage); diff != "" {
						t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
					}
					wantKU := x509.KeyUsageDigitalSignature
					if alg != config.KeyAlgorithmECDSAP256 {
						wantKU |= x509.KeyUsageKeyEncipherment
					}
					if leaf.KeyUsage != wantKU || leaf.IsCA {
						t.Errorf("KeyUsage=%v IsCA=%v, want %v and not a CA", leaf.KeyUsage, leaf.IsCA, wantKU)
					}
					if leaf.Subject.CommonName != w.cn || !slices.Equal(leaf.Subject.Organization, w.org) {
						t.Errorf("subject CN=%q O=%q, want CN=%q O=%q", leaf.Subject.CommonName, leaf.Subject.Organization, w.cn, w.org)
					}
					if d := leaf.NotAfter.Sub(leaf.NotBefore) - validity; d < -time.Minute || d > time.Minute {
						t.Errorf("valid for %s, want %s", leaf.NotAfter.Sub(leaf.NotBefore), validity)
					}
				})
			}

			for _, r := range results {
				info, err := os.Stat(r.Path)
				if err != nil {
					t.Fatal(err)
				}
				want := fs.FileMode(0o644)
				if strings.HasSuffix(r.Path, ".key") {
					want = 0o600
				}
				if info.Mode().Perm() != want {
					t.Errorf("%s: mode %v, want %v", r.Path, info.Mode().Perm(), want)
				}
			}
			for _, d := range []string{dir, filepath.Join(dir, "etcd")} {
				if info, err := os.Stat(d); err != nil || info.Mode().Perm() != 0o700 {
					t.Errorf("%s: %v, want mode 0700", d, info.Mode().Perm())
				}
			}
		})
	}
}

func TestEnsureKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		alg  string
		bits int // RSA modulus size; 0 for ECDSA P-256
	}{
		{config.KeyAlgorithmECDSAP256, 0},
		{config.KeyAlgorithmRSA2048, 2048},
		{config.KeyAlgorithmRSA3072, 3072},
		{config.KeyAlgorithmRSA4096, 4096},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			kp, err := Issuer{KeyAlgorithm: tc.alg, Validity: time.Hour, Now: testNow}.Issue(Spec{Name: "ca", Kind: KindCA, CommonName: "ca"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch pub := kp.Cert.PublicKey.(type) {
			case *ecdsa.PublicKey:
				if tc.bits != 0 || pub.Curve != elliptic.P256() {
					t.Errorf("got an ECDSA %s key, want %s", pub.Curve.Params().Name, tc.alg)
				}
			case *rsa.PublicKey:
				if pub.N.BitLen() != tc.bits {
					t.Errorf("got an RSA-%d key, want %s", pub.N.BitLen(), tc.alg)
				}
			default:
				t.Errorf("got a %T, want %s", pub, tc.alg)
			}
		})
	}
	if _, err := NewKey("DSA-1024"); err == nil {
		t.Error("NewKey accepted DSA-1024")
	}
}

func TestEnsureSANs(t *testing.T) {
	for _, tc := range []struct {
		name              string
		mutate            func(*config.Config)
		wantAPI, wantEtcd []string
		wantPeer          []string
	}{
		{
			name: "defaults",
			wantAPI: []string{"10.96.0.1", "127.0.0.1", "192.0.2.10", "kubernetes", "kubernetes.default",
				"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "node1"},
			wantEtcd: []string{"127.0.0.1", "192.0.2.10", "::1", "localhost", "node1"},
			wantPeer: []string{"192.0.2.10", "node1"},
		},
		{
			name: "endpoint name, extra SANs with duplicates, other domain and service range",
			mutate: func(c *config.Config) {
				c.Cluster.ControlPlaneEndpoint = "api.example.com:443"
				c.Cluster.APIServer.CertSANs = []string{"10.0.0.5", "lb.example.com", "198.51.100.7", "api.example.com", "2001:db8::1"}
				c.Cluster.Networking.DNSDomain = "corp.internal"
				c.Cluster.Networking.ServiceSubnet = "172.20.0.0/16"
				c.Node.Name = "cp-a"
				c.Node.AdvertiseAddress = "198.51.100.7"
			},
			wantAPI: []string{"10.0.0.5", "127.0.0.1", "172.20.0.1", "198.51.100.7", "2001:db8::1", "api.example.com", "cp-a",
				"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.corp.internal",
				"lb.example.com", "localhost"},
			wantEtcd: []string{"127.0.0.1", "198.51.100.7", "::1", "cp-a", "localhost"},
			wantPeer: []string{"198.51.100.7", "cp-a"},
		},
		{
			name: "IPv6 service range",
			mutate: func(c *config.Config) {
				c.Cluster.Networking.ServiceSubnet = "fd00:10:96::/112"
			},
			wantAPI: []string{"127.0.0.1", "192.0.2.10", "fd00:10:96::1", "kubernetes", "kubernetes.default",
				"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "node1"},
			wantEtcd: []string{"127.0.0.1", "192.0.2.10", "::1", "localhost", "node1"},
			wantPeer: []string{"192.0.2.10", "node1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Ensure(dir, configtest.Config(t, tc.mutate), clock(testNow)); err != nil {
				t.Fatal(err)
			}
			for file, want := range map[string][]string{"apiserver.crt": tc.wantAPI, "etcd/server.crt": tc.wantEtcd, "etcd/peer.crt": tc.wantPeer} {
				c := loadCert(t, filepath.Join(dir, file))
				got := append(ipStrings(c.IPAddresses), c.DNSNames...)
				if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
					t.Errorf("%s SANs (-want +got):\n%s", file, diff)
				}
			}
		})
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	cfg := configtest.Config(t, nil)
	if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	results, err := Ensure(dir, cfg, clock(testNow.Add(24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Action != Existing {
			t.Errorf("second run: %s, want %s", r, Existing)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("second run changed files (-before +after):\n%s", diff)
	}
}

func TestEnsureRejectsWhatDiffers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(t *testing.T, dir string, cfg *config.Config) time.Time // returns the second run's time
		wantErr []string
	}{
		{
			name: "new certSAN",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				cfg.Cluster.APIServer.CertSANs = append(cfg.Cluster.APIServer.CertSANs, "10.0.0.5")
				return testNow
			},
			wantErr: []string{"/apiserver.crt: missing SAN 10.0.0.5", "fix apiServer.certSANs"},
		},
		{
			name: "new node address",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				cfg.Node.AdvertiseAddress = "192.0.2.11"
				return testNow
			},
			// The API keeps 192.0.2.10: it is still the controlPlaneEndpoint.
			wantErr: []string{"/apiserver.crt: missing SAN 192.0.2.11;",
				"/etcd/server.crt: missing SAN 192.0.2.11, unexpected SAN 192.0.2.10",
				"/etcd/peer.crt: missing SAN 192.0.2.11, unexpected SAN 192.0.2.10"},
		},
		{
			name: "other key algorithm",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				cfg.Cluster.Certificates.KeyAlgorithm = config.KeyAlgorithmRSA2048
				return testNow
			},
			wantErr: []string{"/apiserver.crt: key algorithm is ECDSA, configured RSA-2048", "/sa.key: key algorithm is ECDSA"},
		},
		{
			name: "expired leaves",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				return testNow.Add(config.DefaultLeafValidity + time.Hour)
			},
			wantErr: []string{"/front-proxy-client.crt: expired on 2027-03-04T05:06:07Z"},
		},
		{
			name: "key of another certificate",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				copyFile(t, filepath.Join(dir, "front-proxy-client.key"), filepath.Join(dir, "apiserver.key"))
				return testNow
			},
			wantErr: []string{"/apiserver.crt: private key " + "DIR/apiserver.key does not match it"},
		},
		{
			name: "CA key of another CA",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				copyFile(t, filepath.Join(dir, "etcd/ca.key"), filepath.Join(dir, "ca.key"))
				return testNow
			},
			wantErr: []string{"/ca.crt: private key DIR/ca.key does not match it"},
		},
		{
			name: "leaf signed by another CA",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				copyFile(t, filepath.Join(dir, "etcd/healthcheck-client.crt"), filepath.Join(dir, "front-proxy-client.crt"))
				copyFile(t, filepath.Join(dir, "etcd/healthcheck-client.key"), filepath.Join(dir, "front-proxy-client.key"))
				return testNow
			},
			wantErr: []string{"/front-proxy-client.crt: not signed by the CA front-proxy-ca, " +
				`common name is "kube-etcd-healthcheck-client", expected "front-proxy-client"`},
		},
		{
			name: "certificate without its key, while another pair is missing",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				removeFiles(t, dir, "etcd/peer.key", "apiserver.crt", "apiserver.key")
				return testNow
			},
			wantErr: []string{"DIR/etcd/peer.crt exists without DIR/etcd/peer.key"},
		},
		{
			name: "leaf whose CA is gone",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				removeFiles(t, dir, "front-proxy-ca.crt", "front-proxy-ca.key")
				return testNow
			},
			wantErr: []string{"/front-proxy-client.crt: its CA DIR/front-proxy-ca.crt does not exist"},
		},
		{
			name: "service-account public key of another key",
			change: func(t *testing.T, dir string, cfg *config.Config) time.Time {
				other, err := NewKey(config.KeyAlgorithmECDSAP256)
				if err != nil {
					t.Fatal(err)
				}
				pub, err := EncodePublicKey(other.Public())
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pub, 0o644); err != nil {
					t.Fatal(err)
				}
				return testNow
			},
			wantErr: []string{"DIR/sa.pub does not match DIR/sa.key"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := configtest.Config(t, nil)
			if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
				t.Fatal(err)
			}
			now := tc.change(t, dir, cfg)
			before := snapshot(t, dir)
			for _, dryRun := range []bool{true, false} {
				_, err := Ensure(dir, cfg, Options{DryRun: dryRun, Now: func() time.Time { return now }})
				if err == nil {
					t.Fatalf("dry run %v: Ensure succeeded, want an error", dryRun)
				}
				for _, want := range tc.wantErr {
					want = strings.ReplaceAll(want, "DIR", dir)
					if !strings.Contains(err.Error(), want) {
						t.Errorf("dry run %v: error does not contain %q:\n%v", dryRun, want, err)
					}
				}
			}
			if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
				t.Errorf("a failed run changed files (-before +after):\n%s", diff)
			}
		})
	}
}

// A run killed between a pair's two files leaves the key (written first): the next run
// certifies that key, for a CA, a leaf and the service-account key pair alike, and
// leaves every other file as it was.
func TestEnsureCertifiesAKeyLeftWithoutItsCertificate(t *testing.T) {
	dir := t.TempDir()
	cfg := configtest.Config(t, nil)
	if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]byte{}
	for _, k := range []string{"ca.key", "apiserver.key", "sa.key"} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = b
	}
	// The CA's certificate goes with every certificate it signed, which its new
	// certificate (same key, new serial) still verifies.
	removeFiles(t, dir, "ca.crt", "apiserver.crt", "sa.pub")
	if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
		t.Fatalf("Ensure after a half-written run: %v", err)
	}
	for k, want := range keys {
		if got, err := os.ReadFile(filepath.Join(dir, k)); err != nil || string(got) != string(want) {
			t.Errorf("%s was replaced (%v): the key left behind must be kept", k, err)
		}
	}
	ca := loadCert(t, filepath.Join(dir, "ca.crt"))
	api := loadCert(t, filepath.Join(dir, "apiserver.crt"))
	if err := api.CheckSignatureFrom(ca); err != nil {
		t.Errorf("the new apiserver certificate is not signed by the CA's key: %v", err)
	}
	if kubelet := loadCert(t, filepath.Join(dir, "apiserver-kubelet-client.crt")); kubelet.CheckSignatureFrom(ca) != nil {
		t.Errorf("a certificate of the CA's first run no longer verifies with its new certificate")
	}
	if _, err := os.Stat(filepath.Join(dir, "sa.pub")); err != nil {
		t.Errorf("sa.pub was not derived again: %v", err)
	}
	// And a second run is a no-op.
	before := snapshot(t, dir)
	if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("a second run changed files:\n%s", diff)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func removeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEnsureDryRunWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	cfg := configtest.Config(t, nil)
	planned, err := Ensure(dir, cfg, Options{DryRun: true, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dry run created %s (stat: %v)", dir, err)
	}
	done, err := Ensure(dir, cfg, clock(testNow))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(done, planned); diff != "" {
		t.Errorf("dry-run plan differs from the real run (-real +planned):\n%s", diff)
	}
}

func TestEnsureRegeneratesMissingLeaf(t *testing.T) {
	// A short-lived CA: a leaf made late in its life must not outlive it.
	dir := t.TempDir()
	cfg := configtest.Config(t, func(c *config.Config) {
		c.Cluster.Certificates.CAValidity = &metav1.Duration{Duration: 30 * time.Hour}
		c.Cluster.Certificates.Validity = &metav1.Duration{Duration: 24 * time.Hour}
	})
	if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
		t.Fatal(err)
	}
	ca := snapshot(t, dir)["ca.crt"]
	removeFiles(t, dir, "apiserver.crt", "apiserver.key")
	later := testNow.Add(20 * time.Hour) // + 24h of validity is past the CA's 30h
	results, err := Ensure(dir, cfg, clock(later))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		want := Existing
		if strings.HasSuffix(r.Path, "/apiserver.crt") || strings.HasSuffix(r.Path, "/apiserver.key") {
			want = Generated
		}
		if r.Action != want {
			t.Errorf("%s: %s, want %s", r.Path, r.Action, want)
		}
	}
	if snapshot(t, dir)["ca.crt"] != ca {
		t.Error("the CA was replaced")
	}
	leaf, caCert := loadCert(t, filepath.Join(dir, "apiserver.crt")), loadCert(t, filepath.Join(dir, "ca.crt"))
	if !leaf.NotAfter.Equal(caCert.NotAfter) {
		t.Errorf("leaf NotAfter %s, want the CA's %s", leaf.NotAfter, caCert.NotAfter)
	}
}

func TestEnsureExternalEtcd(t *testing.T) {
	dir := t.TempDir()
	cfg := configtest.Config(t, func(c *config.Config) {
		c.Cluster.Etcd.External = &config.ExternalEtcd{Endpoints: []string{"https://etcd.example.com:2379"},
			CAFile: "/etc/etcd/ca.crt", CertFile: "/etc/etcd/client.crt", KeyFile: "/etc/etcd/client.key"}
	})
	if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for name := range snapshot(t, dir) {
		got = append(got, name)
	}
	want := []string{"apiserver-kubelet-client.crt", "apiserver-kubelet-client.key", "apiserver.crt", "apiserver.key",
		"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt", "front-proxy-client.key",
		"sa.key", "sa.pub"}
	if diff := cmp.Diff(want, sorted(got)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadCA(dir, CA); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCA of an empty directory: %v, want fs.ErrNotExist", err)
	}
	if _, err := Ensure(dir, configtest.Config(t, nil), clock(testNow)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CA, FrontProxyCA, EtcdCA} {
		ca, err := LoadCA(dir, name)
		if err != nil {
			t.Fatalf("LoadCA(%s): %v", name, err)
		}
		if !ca.Cert.Equal(loadCert(t, filepath.Join(dir, name+".crt"))) || !publicKeysEqual(ca.Key.Public(), ca.Cert.PublicKey) {
			t.Errorf("LoadCA(%s) returned another certificate or a key that does not match", name)
		}
	}
	copyFile(t, filepath.Join(dir, "etcd/ca.key"), filepath.Join(dir, "ca.key"))
	if _, err := LoadCA(dir, CA); err == nil || !strings.Contains(err.Error(), "ca.key does not match") {
		t.Errorf("LoadCA with a foreign key: %v, want a mismatch error", err)
	}
	if _, err := LoadCA(dir, APIServer); err == nil || !strings.Contains(err.Error(), "not a certificate authority") {
		t.Errorf("LoadCA of a leaf: %v, want an error", err)
	}
}
