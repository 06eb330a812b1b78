package initcluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/handover"
	"github.com/selfkube/selfkube/internal/host"
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

func TestStateRoundTripAndFinishedNode(t *testing.T) {
	l := host.Layout{Root: t.TempDir()}
	d := &Data{Options: Options{Layout: l}}
	if err := d.own("/etc/kubernetes/manifests/etcd.yaml"); err != nil {
		t.Fatal(err)
	}
	_ = d.own("/etc/kubernetes/manifests/etcd.yaml")
	d.State.Completed = time.Unix(1700000000, 0)
	if err := d.saveState(); err != nil {
		t.Fatal(err)
	}
	s, err := LoadState(l)
	if err != nil || len(s.Owned) != 1 || !s.Completed.Equal(d.State.Completed) {
		t.Fatalf("state %+v %v", s, err)
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
			Labels: map[string]string{labelName: label}},
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
