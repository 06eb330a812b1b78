package manifests

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"

	"github.com/selfkube/selfkube/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testHost is the machine the test configurations are defaulted for.
var testHost = config.Host{Hostname: "node1", DefaultAddress: "192.0.2.10"}

// allFiles lists every file of the asset directory layout.
var allFiles = []string{
	FileCACert, FileCAKey, FileAPIServerCert, FileAPIServerKey, FileAPIServerKubeletCert, FileAPIServerKubeletKey,
	FileFrontProxyCACert, FileFrontProxyCAKey, FileFrontProxyClientCert, FileFrontProxyClientKey,
	FileServiceAccountKey, FileServiceAccountPub, FileAPIServerEtcdCert, FileAPIServerEtcdKey,
	FileEtcdCACert, FileEtcdCAKey, FileEtcdServerCert, FileEtcdServerKey, FileEtcdPeerCert, FileEtcdPeerKey,
	FileEtcdHealthcheckCert, FileEtcdHealthcheckKey,
	FileAdminConf, FileSuperAdminConf, FileControllerManagerConf, FileSchedulerConf, FileKubeletConf,
	FileEncryptionConfig, FileAuditPolicy,
}

// fakeFiles has fixed contents, so Secrets in the golden files are stable.
func fakeFiles() Files {
	f := Files{}
	for _, name := range allFiles {
		f[name] = []byte("fake " + name + "\n")
	}
	return f
}

func defaultConfig(t testing.TB) *config.Config {
	t.Helper()
	return validConfig(t, &config.Config{})
}

// customConfig exercises every option the manifests depend on.
func customConfig(t testing.TB) *config.Config {
	t.Helper()
	return validConfig(t, &config.Config{
		Cluster: config.ClusterConfiguration{
			ImageRepository: "registry.local/k8s",
			Images: config.Images{
				CoreDNS:   "registry.local/dns/coredns:v1.15.0-custom",
				APIServer: "registry.local/patched/kube-apiserver:v1.36.3-fix1",
			},
			ControlPlaneEndpoint: "api.example.internal:6443",
			Networking: config.Networking{
				PodSubnet:     "10.32.0.0/12",
				ServiceSubnet: "172.20.0.0/16",
				DNSDomain:     "example.internal",
			},
			APIServer: config.APIServer{
				Component: config.Component{ExtraArgs: map[string]string{
					"enable-admission-plugins": "NodeRestriction,AlwaysPullImages",
					"audit-log-maxage":         "7",
				}},
				CertSANs: []string{"api.example.internal", "198.51.100.7"},
			},
			ControllerManager: config.Component{ExtraArgs: map[string]string{
				"node-monitor-grace-period": "20s",
				"bind-address":              "0.0.0.0",
			}},
			Scheduler: config.Component{ExtraArgs: map[string]string{"v": "2"}},
			Etcd: config.Etcd{External: &config.ExternalEtcd{
				Endpoints: []string{"https://etcd-0.example.internal:2379", "https://etcd-1.example.internal:2379"},
				CAFile:    "/etc/etcd-client/ca.crt",
				CertFile:  "/etc/etcd-client/client.crt",
				KeyFile:   "/etc/etcd-client/client.key",
			}},
			Certificates: config.Certificates{KeyAlgorithm: config.KeyAlgorithmRSA2048},
			Proxy:        config.Proxy{Mode: "nftables"},
		},
		Node: config.NodeConfiguration{Name: "cp-1", AdvertiseAddress: "192.0.2.21"},
	})
}

func validConfig(t testing.TB, cfg *config.Config) *config.Config {
	t.Helper()
	config.Default(cfg, testHost)
	if errs := config.Validate(cfg); len(errs) > 0 {
		t.Fatalf("test configuration is not valid: %v", errs.ToAggregate())
	}
	return cfg
}

// render builds every asset, bootstrap and self-hosted.
func render(t testing.TB, cfg *config.Config) []Asset {
	t.Helper()
	boot, err := Bootstrap(cfg)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	hosted, err := SelfHosted(cfg, fakeFiles())
	if err != nil {
		t.Fatalf("SelfHosted: %v", err)
	}
	return append(boot, hosted...)
}

// renderNodeSide builds what join writes on a node (the api-proxy of a worker, the etcd
// member of a control-plane node) and the kubeadm-compat objects init publishes, under
// paths of their own, so that the golden files pin them too.
func renderNodeSide(t testing.TB, cfg *config.Config) []Asset {
	t.Helper()
	assets := []Asset{{Path: "join/api-proxy.yaml", Object: APIProxyPod(cfg, []string{"192.0.2.10:6443", "192.0.2.11:6443"})}}
	if cfg.Cluster.Etcd.Local != nil { // a control-plane join runs an etcd member only then
		initial := "node0=https://192.0.2.9:2380," + cfg.Node.Name + "=https://" + cfg.Node.AdvertiseAddress + ":2380"
		assets = append(assets, Asset{Path: "join/etcd-member.yaml", Object: EtcdMemberPod(cfg, initial)})
	}
	kc := &kubeletv1beta1.KubeletConfiguration{CgroupDriver: "systemd", ClusterDomain: cfg.Cluster.Networking.DNSDomain, ClusterDNS: []string{"10.96.0.10"}}
	compat, err := KubeadmCompat(cfg, kc)
	if err != nil {
		t.Fatalf("KubeadmCompat: %v", err)
	}
	for _, o := range compat {
		m, err := meta.Accessor(o)
		if err != nil {
			t.Fatal(err)
		}
		kind := strings.ToLower(o.GetObjectKind().GroupVersionKind().Kind)
		assets = append(assets, Asset{Path: "kubeadm-compat/" + kind + "-" + m.GetName() + ".yaml", Object: o})
	}
	return assets
}

var cases = map[string]func(testing.TB) *config.Config{
	"default": defaultConfig,
	"custom":  customConfig,
}

func TestGolden(t *testing.T) {
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			cfg := mk(t)
			assets := append(render(t, cfg), renderNodeSide(t, cfg)...)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]bool{}
			for _, a := range assets {
				got, err := Encode(a.Object)
				if err != nil {
					t.Fatalf("Encode %s: %v", a.Path, err)
				}
				file := filepath.Join(dir, filepath.FromSlash(a.Path))
				want[file] = true
				if *update {
					if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(file, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				golden, err := os.ReadFile(file)
				if err != nil {
					t.Errorf("%s: %v (run go test ./internal/manifests -update)", a.Path, err)
					continue
				}
				if diff := cmp.Diff(string(golden), string(got)); diff != "" {
					t.Errorf("%s differs from its golden file (-golden +got):\n%s", a.Path, diff)
				}
			}
			// A golden file no asset produces is stale.
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if !want[p] {
					t.Errorf("%s is not rendered any more (run go test ./internal/manifests -update)", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStrictDecode decodes every rendered file strictly with the scheme of rendered kinds, so a
// field the API does not know, or one set twice, fails here rather than in the cluster,
// and checks that nothing is lost on the way.
func TestStrictDecode(t *testing.T) {
	kinds, err := renderedKinds()
	if err != nil {
		t.Fatal(err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, kinds, kinds,
		json.SerializerOptions{Yaml: true, Strict: true})
	for name, mk := range cases {
		for _, a := range render(t, mk(t)) {
			data, err := Encode(a.Object)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, a.Path, err)
			}
			decoded, gvk, err := strict.Decode(data, nil, nil)
			if err != nil {
				t.Errorf("%s/%s: strict decoding: %v", name, a.Path, err)
				continue
			}
			if gvk.Kind == "" || gvk.Version == "" {
				t.Errorf("%s/%s: no apiVersion/kind: %v", name, a.Path, gvk)
			}
			orig := a.Object.DeepCopyObject()
			orig.GetObjectKind().SetGroupVersionKind(*gvk)
			if !apiequality.Semantic.DeepEqual(orig, decoded) {
				t.Errorf("%s/%s: decoded object differs from the built one:\n%s", name, a.Path, cmp.Diff(orig, decoded))
			}
		}
	}
}

func TestStrictDecodeRejectsUnknownField(t *testing.T) {
	// The decoder of TestStrictDecode must be able to fail.
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	_, _, err := strict.Decode([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nspecc: {}\n"), nil, nil)
	if err == nil {
		t.Fatal("an unknown field decoded without error")
	}
}

func TestEncodeIsDeterministic(t *testing.T) {
	cfg := customConfig(t)
	first, second := render(t, cfg), render(t, cfg)
	for i := range first {
		a, errA := Encode(first[i].Object)
		b, errB := Encode(second[i].Object)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if string(a) != string(b) {
			t.Errorf("%s renders differently twice", first[i].Path)
		}
		if !strings.HasPrefix(string(a), "apiVersion: ") || !strings.Contains(string(a), "\nkind: ") {
			t.Errorf("%s lacks apiVersion/kind:\n%s", first[i].Path, a)
		}
		if strings.Contains(string(a), "creationTimestamp: null") || strings.Contains(string(a), "\nstatus:") {
			t.Errorf("%s carries status or creationTimestamp:\n%s", first[i].Path, a)
		}
	}
}

func TestAssetsCarryTheirKind(t *testing.T) {
	for name, mk := range cases {
		for _, a := range render(t, mk(t)) {
			want, err := kindOf(a.Object)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Object.GetObjectKind().GroupVersionKind(); got != want {
				t.Errorf("%s/%s: object says %v, want %v", name, a.Path, got, want)
			}
		}
	}
}

func TestEncodeRejectsUnknownType(t *testing.T) {
	if _, err := Encode(&runtime.Unknown{}); err == nil {
		t.Fatal("Encode accepted an object outside the scheme")
	}
}

func TestAssetPathsAreUniqueAndOrdered(t *testing.T) {
	for name, mk := range cases {
		seen := map[string]bool{}
		var hosted []string
		for _, a := range render(t, mk(t)) {
			if seen[a.Path] {
				t.Errorf("%s: two assets at %s", name, a.Path)
			}
			seen[a.Path] = true
			if strings.HasPrefix(a.Path, "manifests/") {
				hosted = append(hosted, a.Path)
			}
		}
		if !sort.StringsAreSorted(hosted) {
			t.Errorf("%s: self-hosted assets are not in apply (file name) order: %v", name, hosted)
		}
	}
}
