// Package etcdagent is the etcd part of the node agent of a control-plane node (it runs
// inside `selfkube checkpointer`, the DaemonSet on every control-plane node): it carries
// out what the control-plane operator asks of this node's etcd member in the ControlPlane
// status, and nothing else.
//
//	status.etcd.snapshotFor = G, and this node has no snapshot of G ──▶ snapshot the local
//	    member into SnapshotDir (0600, the newest Keep kept) and report it in
//	    status.etcd.snapshots[node] (or the error, tried again after RetryAfter)
//	status.etcd.member names this node, and its etcd static pod runs other extra flags
//	    or another image (version) ──▶ render the static pod again with those flags and
//	    that image (manifests.EtcdWith)
//	    and replace the file; the kubelet restarts the member
//	status.etcd.member names this node, and its static pod runs those ──▶ check
//	    the member (it answers with a leader; the member list has every member started
//	    and voting) and report in status.etcd.checks[node], every CheckEvery while named
//
// The operator changes one member at a time and judges each by its mirror pod and this
// check; the agent
// decides nothing about the cluster. Decide is the pure part; Agent observes (the
// ControlPlane from an informer, the static pod from the kubelet's directory) and acts.
package etcdagent

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
)

// RetryAfter is how long after a failed snapshot the agent tries again.
const RetryAfter = 15 * time.Second

// Action is what to do on this node.
type Action struct {
	// Snapshot, when not 0, is the generation to take a snapshot for.
	Snapshot int64
	// Change, when set, is the member change to carry out.
	Change *controlplane.EtcdMemberChange
	// Check, when set, is the member change this node's static pod runs already, whose
	// member to check (endpoint health and member list) and report on, again every
	// CheckEvery while the operator names it: the operator takes only a check made after
	// the restarted member came back Ready.
	Check *controlplane.EtcdMemberChange
}

// ScheduledDue says a scheduled snapshot is due: every interval (0: never), counted from
// the newest scheduled one (last; zero or in the future: due at once), but not within
// RetryAfter of a failed try that ended at failed.
func ScheduledDue(interval time.Duration, last, failed, now time.Time) bool {
	switch {
	case interval <= 0:
		return false
	case !failed.IsZero() && failed.After(last) && now.Sub(failed) < RetryAfter:
		return false
	}
	// A newest snapshot from the future (the clock was set back) does not hold the
	// schedule up until then.
	return last.IsZero() || last.After(now) || now.Sub(last) >= interval
}

// CheckEvery is how often the agent checks its member while the operator names it.
const CheckEvery = 3 * time.Second

// Decide says what node's agent does, given the ControlPlane's etcd status and the
// node's etcd static pod (nil when the node has none: nothing to do then).
func Decide(node string, st *controlplane.EtcdStatus, local *corev1.Pod, now time.Time) Action {
	var a Action
	if st == nil || local == nil {
		return a
	}
	if st.SnapshotFor > 0 {
		mine, ok := st.Snapshots[node]
		switch {
		case !ok || mine.Generation < st.SnapshotFor:
			a.Snapshot = st.SnapshotFor
		case mine.Generation == st.SnapshotFor && mine.Error != "" && now.Sub(mine.Time.Time) >= RetryAfter:
			a.Snapshot = st.SnapshotFor
		}
	}
	if m := st.Member; m != nil && m.Node == node {
		if local.Annotations[manifests.AnnotationEtcdExtraArgs] != manifests.EtcdExtraArgsText(m.ExtraArgs) ||
			m.Image != "" && manifests.EtcdImage(local) != m.Image {
			a.Change = m
		} else {
			a.Check = m
		}
	}
	return a
}
