package initcluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/handover"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/pki/pkitest"
	"github.com/selfkube/selfkube/internal/render"
	"github.com/selfkube/selfkube/internal/workflow"
)

func TestEvaluatePreflight(t *testing.T) {
	fail := func() error { return errors.New("bad") }
	ok := func() error { return nil }
	cs := []Check{{Name: "Port-6443", Run: fail}, {Name: "Swap", Run: fail, Warning: true}, {Name: "Kubelet", Run: ok}, {Name: "IPForward", Run: fail}}
	tests := []struct {
		ignore       []string
		errs, warns  int
		firstErrName string
	}{
		{nil, 2, 1, "[Port-6443]"},
		{[]string{"port-6443"}, 1, 2, "[IPForward]"},
		{[]string{"all"}, 0, 3, ""},
	}
	for _, tt := range tests {
		errs, warns := evaluate(cs, tt.ignore)
		if len(errs) != tt.errs || len(warns) != tt.warns {
			t.Errorf("ignore %v: errors %v warnings %v", tt.ignore, errs, warns)
			continue
		}
		if tt.errs > 0 && !strings.HasPrefix(errs[0], tt.firstErrName) {
			t.Errorf("ignore %v: first error %q", tt.ignore, errs[0])
		}
	}
}

func TestRecordRoundTripAndFinishedNode(t *testing.T) {
	l := host.Layout{Root: t.TempDir()}
	rec, err := LoadRecord(l)
	if err != nil {
		t.Fatal(err)
	}
	d := &Data{Options: Options{Layout: l}, Record: rec}
	if err := d.own("/etc/kubernetes/manifests/etcd.yaml"); err != nil {
		t.Fatal(err)
	}
	_ = d.own("/etc/kubernetes/manifests/etcd.yaml")
	d.Record.Completed = time.Unix(1700000000, 0)
	if err := d.Record.Save(); err != nil {
		t.Fatal(err)
	}
	s, err := LoadRecord(l)
	if err != nil || len(s.Owned) != 1 || !s.Completed.Equal(d.Record.Completed) {
		t.Fatalf("record %+v %v", s, err)
	}
	cfg := &config.Config{}
	config.Default(cfg, config.Host{Hostname: "n", DefaultAddress: "192.0.2.1"})
	_, err = Run(context.Background(), cfg, Options{Layout: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, workflow.Options{})
	if !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("init on a finished node: %v", err)
	}
}

func pod(name, label, ownerKind, node string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", UID: types.UID(name + "-uid"),
			Labels: map[string]string{manifests.LabelName: label}},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
	if ownerKind != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: ownerKind, Name: label}}
	}
	return p
}

// TestObserveIgnoresTheTemporaryControlPlane: the temporary pods are Ready long before
// the self-hosted ones; the gate must not count them.
func TestObserveIgnoresTheTemporaryControlPlane(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	cases := []struct {
		name string
		pods []*corev1.Pod
		want map[handover.Condition]bool
	}{
		{"only temporary (mirror) pods", []*corev1.Pod{
			pod("kube-apiserver-n1", "kube-apiserver", "Node", "n1", true),
			pod("kube-scheduler-n1", "kube-scheduler", "Node", "n1", true),
			pod("kube-controller-manager-n1", "kube-controller-manager", "Node", "n1", true),
		}, map[handover.Condition]bool{handover.NodeReady: true}},
		{"self-hosted not ready, other node's apiserver ready", []*corev1.Pod{
			pod("kube-apiserver-abc", "kube-apiserver", "DaemonSet", "n1", false),
			pod("kube-apiserver-def", "kube-apiserver", "DaemonSet", "n2", true),
			pod("kube-scheduler-x", "kube-scheduler", "ReplicaSet", "n1", true),
		}, map[handover.Condition]bool{handover.NodeReady: true, handover.SchedulerReady: true}},
		{"all self-hosted ready", []*corev1.Pod{
			pod("kube-apiserver-abc", "kube-apiserver", "DaemonSet", "n1", true),
			pod("kube-scheduler-x", "kube-scheduler", "ReplicaSet", "n1", true),
			pod("kube-controller-manager-y", "kube-controller-manager", "ReplicaSet", "n1", true),
		}, map[handover.Condition]bool{handover.NodeReady: true, handover.SchedulerReady: true,
			handover.ControllerManagerReady: true, handover.APIServerPodReady: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(node)
			for _, p := range tc.pods {
				if _, err := client.CoreV1().Pods("kube-system").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &config.Config{}
			config.Default(cfg, config.Host{Hostname: "n1", DefaultAddress: "192.0.2.1"})
			d := &Data{Cfg: cfg, client: client, Options: Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
			// A probe that reaches nothing: APIServerServes must stay false here.
			o, err := d.observe(context.Background(), handover.ServingProbe{Addr: "127.0.0.1:1", Proc: "/proc", Attempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range handover.Conditions {
				if o.Held[c] != tc.want[c] {
					t.Errorf("%s: %v, want %v", c, o.Held[c], tc.want[c])
				}
			}
		})
	}
}

func TestLeaseTakenOver(t *testing.T) {
	since := time.Unix(1000, 0)
	lease := func(holder string, renew time.Time) *coordinationv1.Lease {
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), RenewTime: &metav1.MicroTime{Time: renew}}}
	}
	for _, tc := range []struct {
		name string
		l    *coordinationv1.Lease
		want bool
	}{
		{"successor renewed", lease("sk1_new", since.Add(time.Second)), true},
		{"the temporary leader's last renewals", lease("sk1_old", since.Add(time.Second)), false},
		{"successor's renewal is older than the teardown", lease("sk1_new", since.Add(-time.Second)), false},
		{"released, nobody leads yet", lease("", since.Add(time.Second)), false},
		{"empty lease", &coordinationv1.Lease{}, false},
	} {
		if got := leaseTakenOver(tc.l, "sk1_old", since); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNextRunEveryCombination crosses every state an earlier run can leave (Owned,
// HandedOver, Completed) with every selection: the whole workflow, each phase skipped,
// each phase run alone.
func TestNextRunEveryCombination(t *testing.T) {
	type selection int
	const (
		whole selection = iota
		skipOne
		onlyOne
	)
	// What a run does, by selection and by whether init finished before. Owned and
	// HandedOver must not matter.
	want := map[selection]map[bool]runAction{
		whole:   {false: runWorkflow, true: refuse},
		skipOne: {false: runWorkflow, true: refuse},
		onlyOne: {false: runPhase, true: runPhase},
	}
	type sel struct {
		kind selection
		opts workflow.Options
	}
	sels := []sel{{whole, workflow.Options{}}}
	for _, name := range Workflow().Names() {
		sels = append(sels, sel{skipOne, workflow.Options{Skip: []string{name}}}, sel{onlyOne, workflow.Options{Only: name}})
	}
	finished := time.Unix(1700000000, 0)
	for _, sl := range sels {
		for _, completed := range []bool{false, true} {
			for _, owned := range [][]string{nil, {"/etc/kubernetes/manifests/etcd.yaml"}} {
				for _, handedOver := range []bool{false, true} {
					s := host.Record{Owned: owned, HandOver: &host.HandOver{Finished: handedOver}}
					if completed {
						s.Completed = finished
					}
					if got := nextRun(s, sl.opts); got != want[sl.kind][completed] {
						t.Errorf("state %+v, selection %+v: %v, want %v", s, sl.opts, got, want[sl.kind][completed])
					}
				}
			}
		}
	}
}

// compatCluster fakes the API for the bootstrap-token and kubeadm-compat phases: a
// clientset for the token Secret, and a dynamic client whose server-side applies
// succeed unless failing is set, then the kubeadm-compat ConfigMaps' fail.
type compatCluster struct {
	client     *fake.Clientset
	dyn        *dynamicfake.FakeDynamicClient
	failing    bool
	configMaps int // ConfigMap applies that reached the API, failed or not
}

func newCompatCluster() *compatCluster {
	c := &compatCluster{client: fake.NewClientset(), dyn: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())}
	c.client.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: metav1.Verbs{"get", "patch"}}}},
		{GroupVersion: "rbac.authorization.k8s.io/v1", APIResources: []metav1.APIResource{
			{Name: "roles", Namespaced: true, Kind: "Role", Verbs: metav1.Verbs{"get", "patch"}},
			{Name: "rolebindings", Namespaced: true, Kind: "RoleBinding", Verbs: metav1.Verbs{"get", "patch"}}}},
	}
	c.dyn.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		if p.GetResource().Resource == "configmaps" {
			c.configMaps++
			if c.failing {
				return true, nil, apierrors.NewServiceUnavailable("injected: etcd is not answering")
			}
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(p.GetPatch()); err != nil {
			return true, nil, err
		}
		return true, u, nil
	})
	return c
}

// TestRerunAfterKubeadmCompatFails: when the last phase fails, init is not finished, so
// the next init runs kubeadm-compat again instead of answering "already initialized".
// The phases before bootstrap-token need a host; here they only record that they ran.
func TestRerunAfterKubeadmCompatFails(t *testing.T) {
	l := host.Layout{Root: t.TempDir()}
	cfg := &config.Config{}
	config.Default(cfg, config.Host{Hostname: "n1", DefaultAddress: "192.0.2.1"})
	writeCA(t, filepath.Join(l.AssetDir(), render.TLSDir, "ca.crt"))

	var ran, stubs []string
	w := Workflow()
	for i, p := range w.Phases {
		if p.Name == "bootstrap-token" || p.Name == "kubeadm-compat" {
			continue
		}
		w.Phases[i].Run = func(context.Context, *Data) error { ran = append(ran, p.Name); return nil }
		if p.RunIf == nil || p.RunIf(&Data{Cfg: cfg, Record: &host.Record{}}) {
			stubs = append(stubs, p.Name)
		}
	}
	api := newCompatCluster()
	opts := Options{Layout: l, TokenTTL: time.Hour, APITimeout: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// run is Run with the fakes: a new Data with the state on disk, every time.
	run := func(sel workflow.Options) (*Data, error) {
		ran = nil
		rec, err := LoadRecord(l)
		if err != nil {
			t.Fatal(err)
		}
		d := &Data{Options: opts, Cfg: cfg, Record: rec, client: api.client,
			applierFor: func(*rest.Config) (*apply.Applier, error) { return apply.NewFor(api.dyn, api.client.Discovery()), nil }}
		return d, d.run(context.Background(), w, sel)
	}
	completed := func() time.Time {
		s, err := LoadRecord(l)
		if err != nil {
			t.Fatal(err)
		}
		return s.Completed
	}
	step := func(what string, sel workflow.Options, wantCompatRuns bool, check func(d *Data, err error)) {
		t.Helper()
		before := api.configMaps
		d, err := run(sel)
		if got := api.configMaps > before; got != wantCompatRuns {
			t.Errorf("%s: kubeadm-compat applied ConfigMaps: %v, want %v (err %v)", what, got, wantCompatRuns, err)
		}
		check(d, err)
	}

	api.failing = true
	step("first init, kubeadm-compat fails", workflow.Options{}, true, func(_ *Data, err error) {
		if err == nil || !strings.Contains(err.Error(), "phase kubeadm-compat") || errors.Is(err, ErrAlreadyInitialized) {
			t.Fatalf("err = %v, want phase kubeadm-compat's failure", err)
		}
		if c := completed(); !c.IsZero() {
			t.Errorf("init failed in its last phase, but the node is marked initialized at %s", c)
		}
	})

	api.failing = false
	step("init phase kubeadm-compat", workflow.Options{Only: "kubeadm-compat"}, true, func(_ *Data, err error) {
		if err != nil {
			t.Fatal(err)
		}
		if len(ran) != 0 {
			t.Errorf("init phase kubeadm-compat also ran %v", ran)
		}
		if c := completed(); !c.IsZero() {
			t.Errorf("one phase marked the node initialized at %s", c)
		}
	})

	step("second init", workflow.Options{}, true, func(d *Data, err error) {
		if err != nil {
			t.Fatalf("second init: %v", err)
		}
		if !slices.Equal(ran, stubs) {
			t.Errorf("second init ran %v before bootstrap-token, want the whole workflow %v", ran, stubs)
		}
		if d.JoinCommand() == "" {
			t.Error("no join command")
		}
		if completed().IsZero() {
			t.Error("every phase succeeded, but the node is not marked initialized")
		}
	})
	finished := completed()

	step("third init", workflow.Options{}, false, func(_ *Data, err error) {
		if !errors.Is(err, ErrAlreadyInitialized) {
			t.Fatalf("third init: %v, want ErrAlreadyInitialized", err)
		}
		if len(ran) != 0 {
			t.Errorf("a finished node ran %v", ran)
		}
	})

	step("init phase kubeadm-compat on the finished node", workflow.Options{Only: "kubeadm-compat"}, true, func(_ *Data, err error) {
		if err != nil {
			t.Fatal(err)
		}
		if c := completed(); !c.Equal(finished) {
			t.Errorf("completion moved from %s to %s", finished, c)
		}
	})
}

func writeCA(t *testing.T, path string) {
	t.Helper()
	_, data := pkitest.NewCA(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
