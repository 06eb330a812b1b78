package etcdagent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
)

var t0 = time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)

func staticPod(extra string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd", Annotations: map[string]string{manifests.AnnotationEtcdExtraArgs: extra}}}
}

func onImage(p *corev1.Pod, image string) *corev1.Pod {
	p.Spec.Containers = []corev1.Container{{Name: "etcd", Image: image}}
	return p
}

func withImage(m *controlplane.EtcdMemberChange, image string) *controlplane.EtcdMemberChange {
	m.Image = image
	return m
}

func TestDecide(t *testing.T) {
	member := func(node string, args map[string]string) *controlplane.EtcdMemberChange {
		return &controlplane.EtcdMemberChange{Node: node, Generation: 2, Target: controlplane.TargetSpec, ExtraArgs: args}
	}
	snap := func(gen int64, err string, at time.Time) map[string]controlplane.EtcdSnapshot {
		return map[string]controlplane.EtcdSnapshot{"a": {Generation: gen, Error: err, Time: metav1.NewTime(at)}}
	}
	for _, tc := range []struct {
		name         string
		st           *controlplane.EtcdStatus
		local        *corev1.Pod
		wantSnapshot int64
		wantChange   bool
	}{
		{"nothing asked", nil, staticPod("{}"), 0, false},
		{"no etcd on this node", &controlplane.EtcdStatus{SnapshotFor: 2, Member: member("a", nil)}, nil, 0, false},
		{"a snapshot asked, none taken", &controlplane.EtcdStatus{SnapshotFor: 2}, staticPod("{}"), 2, false},
		{"a snapshot asked, an older one taken", &controlplane.EtcdStatus{SnapshotFor: 2, Snapshots: snap(1, "", t0)}, staticPod("{}"), 2, false},
		{"a snapshot asked and taken", &controlplane.EtcdStatus{SnapshotFor: 2, Snapshots: snap(2, "", t0)}, staticPod("{}"), 0, false},
		{"failed just now: not again yet", &controlplane.EtcdStatus{SnapshotFor: 2, Snapshots: snap(2, "timeout", t0.Add(-time.Second))}, staticPod("{}"), 0, false},
		{"failed a while ago: again", &controlplane.EtcdStatus{SnapshotFor: 2, Snapshots: snap(2, "timeout", t0.Add(-RetryAfter))}, staticPod("{}"), 2, false},
		{"another node's member", &controlplane.EtcdStatus{Member: member("b", map[string]string{"snapshot-count": "5"})}, staticPod("{}"), 0, false},
		{"this node's member, other flags", &controlplane.EtcdStatus{Member: member("a", map[string]string{"snapshot-count": "5"})}, staticPod("{}"), 0, true},
		{"this node's member, already so", &controlplane.EtcdStatus{Member: member("a", map[string]string{"snapshot-count": "5"})},
			staticPod(`{"snapshot-count":"5"}`), 0, false},
		{"this node's member back to no flags", &controlplane.EtcdStatus{Member: member("a", nil)}, staticPod(`{"snapshot-count":"5"}`), 0, true},
		{"a pod rendered before the annotation", &controlplane.EtcdStatus{Member: member("a", nil)}, &corev1.Pod{}, 0, true},
		{"this node's member, another version", &controlplane.EtcdStatus{Member: withImage(member("a", nil), "etcd:3.6.16-0")},
			onImage(staticPod("{}"), "etcd:3.6.6-0"), 0, true},
		{"this node's member, already on that version", &controlplane.EtcdStatus{Member: withImage(member("a", nil), "etcd:3.6.16-0")},
			onImage(staticPod("{}"), "etcd:3.6.16-0"), 0, false},
		{"a change from an operator that names no image", &controlplane.EtcdStatus{Member: member("a", nil)},
			onImage(staticPod("{}"), "etcd:3.6.6-0"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Decide("a", tc.st, tc.local, t0)
			if a.Snapshot != tc.wantSnapshot || (a.Change != nil) != tc.wantChange {
				t.Errorf("Decide = %+v, want snapshot %d, change %v", a, tc.wantSnapshot, tc.wantChange)
			}
			// The member named runs its change: it is checked (and only then).
			named := tc.st != nil && tc.st.Member != nil && tc.st.Member.Node == "a" && tc.local != nil
			if wantCheck := named && !tc.wantChange; (a.Check != nil) != wantCheck {
				t.Errorf("Decide = %+v, want check %v", a, wantCheck)
			}
		})
	}
}
