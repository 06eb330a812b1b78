package join

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/approver"
	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/discovery"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/pki"
	"github.com/selfkube/selfkube/internal/workflow"
)

const (
	testServer   = "https://10.0.0.1:6443"
	testNodeName = "node-b"
	testPodCIDR  = "10.200.0.0/16"
)

var testToken = bootstrap.Token{ID: "abcdef", Secret: "0123456789abcdef"}

// publishedConfig is kube-system/selfkube-config as init publishes it: the defaulted
// ClusterConfiguration in YAML (manifests.clusterConfig).
func publishedConfig(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	cfg := &config.Config{}
	cfg.Cluster.ControlPlaneEndpoint = "10.0.0.1:6443"
	cfg.Cluster.Networking.PodSubnet = testPodCIDR
	config.Default(cfg, config.Host{Hostname: "node-a", DefaultAddress: "10.0.0.1"})
	data, err := yaml.Marshal(&cfg.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: manifests.ClusterConfigName, Namespace: metav1.NamespaceSystem},
		Data:       map[string]string{manifests.ClusterConfigKey: string(data)},
	}
}

// testCA is a cluster CA made with internal/pki.
func testCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	ca, err := pki.Issuer{KeyAlgorithm: config.KeyAlgorithmECDSAP256, Validity: time.Hour, Now: time.Now()}.
		Issue(pki.Spec{Name: pki.CA, Kind: pki.KindCA, CommonName: "kubernetes"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// fakeJoin is a Data whose discovery and API clients are fakes, on a temp-dir node.
type fakeJoin struct {
	d       *Data
	client  *fake.Clientset
	fetches int
	configs []*rest.Config
}

func newFakeJoin(t *testing.T, controlPlane bool, objs ...runtime.Object) *fakeJoin {
	t.Helper()
	ca := testCA(t)
	f := &fakeJoin{client: fake.NewClientset(objs...)}
	f.d = &Data{
		Options: Options{
			Layout:       host.Layout{Root: t.TempDir()},
			Endpoint:     "10.0.0.1:6443",
			Token:        testToken,
			Node:         config.NodeConfiguration{Name: testNodeName, AdvertiseAddress: "10.0.0.2"},
			ControlPlane: controlPlane,
			Timeout:      time.Second,
		},
		fetch: func(context.Context) (*discovery.Cluster, error) {
			f.fetches++
			return &discovery.Cluster{Server: testServer, CAData: pki.EncodeCertificate(ca.Cert), CACerts: nil}, nil
		},
		newClient: func(c *rest.Config) (kubernetes.Interface, error) {
			f.configs = append(f.configs, c)
			return f.client, nil
		},
	}
	if controlPlane {
		f.d.ca = ca
	}
	return f
}

func TestPhasesAlone(t *testing.T) {
	tests := []struct {
		name   string
		phases []string // run one at a time, as `join phase NAME`
		node   *corev1.Node
	}{
		{name: "node-name first", phases: []string{"node-name"}},
		{name: "cluster-config first", phases: []string{"cluster-config"}},
		{name: "discovery, then node-name", phases: []string{"discovery", "node-name"}},
		{name: "cluster-config, then node-name", phases: []string{"cluster-config", "node-name"}},
		{name: "all three in order", phases: []string{"discovery", "cluster-config", "node-name"}},
		{name: "node-name, then cluster-config", phases: []string{"node-name", "cluster-config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJoin(t, false, publishedConfig(t))
			ctx := context.Background()
			for _, p := range tt.phases {
				if err := Workflow().Run(ctx, f.d, workflow.Options{Only: p}); err != nil {
					t.Fatalf("phase %s: %v", p, err)
				}
			}
			if f.fetches != 1 {
				t.Errorf("discovery ran %d times, want once", f.fetches)
			}
			for _, c := range f.configs {
				if c.Host != testServer || c.BearerToken != "abcdef.0123456789abcdef" {
					t.Errorf("client made for %s with token %q, want %s with the join token", c.Host, c.BearerToken, testServer)
				}
			}
			cluster, err := f.d.Cluster(ctx)
			if err != nil || cluster.Server != testServer {
				t.Errorf("Cluster() = %+v, %v", cluster, err)
			}
			cfg, err := f.d.Config(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Cluster.Networking.PodSubnet != testPodCIDR || cfg.Cluster.ControlPlaneEndpoint != "10.0.0.1:6443" {
				t.Errorf("cluster config: pod subnet %q, endpoint %q; want %q, 10.0.0.1:6443",
					cfg.Cluster.Networking.PodSubnet, cfg.Cluster.ControlPlaneEndpoint, testPodCIDR)
			}
			if cfg.Node.Name != testNodeName || cfg.Node.AdvertiseAddress != "10.0.0.2" || cfg.Node.NodeIP != "10.0.0.2" {
				t.Errorf("node config: name %q, address %q, node IP %q; want %s, 10.0.0.2 (this node's, not the endpoint's)",
					cfg.Node.Name, cfg.Node.AdvertiseAddress, cfg.Node.NodeIP, testNodeName)
			}
			if f.fetches != 1 {
				t.Errorf("discovery ran %d times after the accessors, want once", f.fetches)
			}
			if got := files(t, f.d.Layout.Root); len(got) != 0 {
				t.Errorf("files written: %v", got)
			}
		})
	}
}

func TestPhasesAloneFail(t *testing.T) {
	tests := []struct {
		name    string
		phase   string
		fetch   error
		objs    []runtime.Object
		wantMsg string
	}{
		{name: "discovery fails under node-name", phase: "node-name", fetch: errors.New("no route"), wantMsg: "no route\nnothing was written"},
		{name: "discovery fails under cluster-config", phase: "cluster-config", fetch: errors.New("no route"), wantMsg: "no route"},
		{name: "no published config", phase: "cluster-config", wantMsg: "reading kube-system/selfkube-config with the token"},
		{name: "damaged published config", phase: "node-name", objs: []runtime.Object{&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: manifests.ClusterConfigName, Namespace: metav1.NamespaceSystem},
			Data:       map[string]string{manifests.ClusterConfigKey: "networking: [oops"},
		}}, wantMsg: "is damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJoin(t, false, tt.objs...)
			if tt.fetch != nil {
				f.d.fetch = func(context.Context) (*discovery.Cluster, error) { f.fetches++; return nil, tt.fetch }
			}
			err := Workflow().Run(context.Background(), f.d, workflow.Options{Only: tt.phase})
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), "phase "+tt.phase) {
				t.Fatalf("err = %v, want phase %s: ...%q", err, tt.phase, tt.wantMsg)
			}
			if f.fetches != 1 {
				t.Errorf("discovery ran %d times, want once", f.fetches)
			}
		})
	}
}

func TestNodeNameFree(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNodeName}}
	otherNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	ledger := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: approver.LedgerName, Namespace: approver.LedgerNamespace}, Data: data}
	}
	forbidden := func(resource string) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, testNodeName, errors.New("no"))
		}
	}
	type reactor struct {
		verb, resource string
		fn             k8stesting.ReactionFunc
	}
	tests := []struct {
		name         string
		controlPlane bool
		objs         []runtime.Object
		reactors     []reactor
		record       *host.Record
		wantTaken    bool
		wantErr      bool
		wantMsg      []string
		wantNodeGet  bool
		wantAdmin    bool // the ledger is read with the admin client
	}{
		{name: "free", objs: []runtime.Object{otherNode}, wantNodeGet: true},
		{
			name: "a node has the name", objs: []runtime.Object{node}, wantTaken: true, wantErr: true, wantNodeGet: true,
			wantMsg: []string{"node-b", "--node-name", "kubectl delete node node-b", "nothing was written"},
		},
		{
			name: "token may not get nodes", objs: []runtime.Object{node}, wantErr: true, wantNodeGet: true,
			reactors: []reactor{{"get", "nodes", forbidden("nodes")}},
			wantMsg:  []string{"checking whether node node-b exists, with the token", "forbidden"},
		},
		{
			name: "resumed after its kubelet started", objs: []runtime.Object{node},
			record: &host.Record{NodeName: testNodeName, Done: []string{"preflight", "discovery", "cluster-config", "node-name", "kubelet"}},
		},
		{
			name: "resumed before its kubelet started", objs: []runtime.Object{node}, wantTaken: true, wantErr: true, wantNodeGet: true,
			record: &host.Record{NodeName: testNodeName, Done: []string{"preflight", "discovery", "cluster-config", "node-name"}},
		},
		{
			name: "record of another name", objs: []runtime.Object{node}, wantTaken: true, wantErr: true, wantNodeGet: true,
			record: &host.Record{NodeName: "node-a", Done: []string{"kubelet"}},
		},
		{name: "control plane, free, no ledger", controlPlane: true, wantNodeGet: true, wantAdmin: true},
		{
			name: "control plane, ledger of other names", controlPlane: true, wantNodeGet: true, wantAdmin: true,
			objs: []runtime.Object{ledger(map[string]string{"node-a": "csr-aaa"})},
		},
		{
			name: "control plane, name in the ledger", controlPlane: true, wantTaken: true, wantErr: true, wantNodeGet: true, wantAdmin: true,
			objs:    []runtime.Object{ledger(map[string]string{"node-a": "csr-aaa", testNodeName: "csr-bbb"})},
			wantMsg: []string{"node-b", "CSR csr-bbb", "--node-name"},
		},
		{
			name: "control plane, node has the name", controlPlane: true, wantTaken: true, wantErr: true, wantNodeGet: true,
			objs: []runtime.Object{node}, wantMsg: []string{"kubectl delete node node-b"},
		},
		{
			name: "control plane, ledger unreadable", controlPlane: true, wantErr: true, wantNodeGet: true, wantAdmin: true,
			objs: []runtime.Object{ledger(map[string]string{testNodeName: "csr-bbb"})},
			reactors: []reactor{{"get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.(k8stesting.GetAction).GetName() == approver.LedgerName {
					return forbidden("configmaps")(a)
				}
				return false, nil, nil
			}}},
			wantMsg: []string{"reading kube-system/selfkube-node-identities"},
		},
		{
			name: "control plane, ledger not found by reactor", controlPlane: true, wantNodeGet: true, wantAdmin: true,
			reactors: []reactor{{"get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.(k8stesting.GetAction).GetName() == approver.LedgerName {
					return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, approver.LedgerName)
				}
				return false, nil, nil
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJoin(t, tt.controlPlane, append([]runtime.Object{publishedConfig(t)}, tt.objs...)...)
			for _, r := range tt.reactors {
				f.client.PrependReactor(r.verb, r.resource, r.fn)
			}
			if tt.record != nil {
				rec, err := host.LoadRecord(f.d.Layout, "join")
				if err != nil {
					t.Fatal(err)
				}
				rec.NodeName, rec.Done = tt.record.NodeName, tt.record.Done
				f.d.Record = rec
			}
			err := nodeNameFree(context.Background(), f.d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if errors.Is(err, ErrNodeNameTaken) != tt.wantTaken {
				t.Errorf("err = %v, want ErrNodeNameTaken: %v", err, tt.wantTaken)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to say %q", err, s)
				}
			}
			gotNodeGet := false
			for _, a := range f.client.Actions() {
				if a.Matches("get", "nodes") {
					gotNodeGet = true
				}
			}
			if gotNodeGet != tt.wantNodeGet {
				t.Errorf("looked the node up: %v, want %v", gotNodeGet, tt.wantNodeGet)
			}
			admin := false
			for _, c := range f.configs {
				if c.BearerToken == "" && len(c.CertData) > 0 && c.Host == testServer {
					admin = true
				}
			}
			if admin != tt.wantAdmin {
				t.Errorf("made an admin client (client certificate from the handed-off CA): %v, want %v", admin, tt.wantAdmin)
			}
		})
	}
}
