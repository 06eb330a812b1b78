package agent

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/fence"
)

// recordingFence logs what the hand-back does, in order, and reports the listener gone
// after listens calls.
type recordingFence struct {
	store  checkpoint.Store
	name   string
	listen int
	log    []string
}

func (f *recordingFence) Hold(addr netip.AddrPort) (func() error, error) {
	f.log = append(f.log, "hold "+addr.String())
	return func() error { f.log = append(f.log, "release"); return nil }, nil
}

func (f *recordingFence) Listening(addr netip.AddrPort) (bool, error) {
	state := "active"
	if !f.store.Active(f.name) {
		state = "retired"
	}
	f.log = append(f.log, "listening? ("+state+")")
	f.listen--
	return f.listen >= 0, nil
}

func TestRetireBehindFence(t *testing.T) {
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "checkpoint-kube-apiserver", Namespace: "kube-system"}}
	parent := func(annotated bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}, Status: corev1.PodStatus{HostIP: "172.31.0.31"}}
		if annotated {
			p.Annotations[checkpoint.AnnotationCheckpointFencePort] = "6443"
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		parent *corev1.Pod
		want   []string
	}{
		{"fenced: hold, retire, wait for the listener to go, release", parent(true), []string{
			"hold 172.31.0.31:6443", "listening? (retired)", "listening? (retired)", "listening? (retired)", "release"}},
		{"no fence port: plain retire", parent(false), nil},
		{"no parent: plain retire", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := checkpoint.Store{Dir: filepath.Join(dir, "checkpoints"), ManifestsDir: filepath.Join(dir, "manifests")}
			if _, err := store.Write("kube-apiserver", pod, nil); err != nil {
				t.Fatal(err)
			}
			if err := store.Activate("kube-apiserver"); err != nil {
				t.Fatal(err)
			}
			f := &recordingFence{store: store, name: "kube-apiserver", listen: 2}
			var slept time.Duration
			a := &Agent{Store: store, Fence: f, Log: slog.New(slog.DiscardHandler), Sleep: func(d time.Duration) { slept += d }}
			if err := a.retire("kube-apiserver", tc.parent); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.log, tc.want) {
				t.Errorf("hand-back steps %q, want %q", f.log, tc.want)
			}
			if store.Active("kube-apiserver") || !store.Present("kube-apiserver") {
				t.Errorf("after retire: active %v present %v, want inactive and present", store.Active("kube-apiserver"), store.Present("kube-apiserver"))
			}
			if tc.want != nil && slept < fence.Settle {
				t.Errorf("accepted connections got %s to send their requests, want at least %s", slept, fence.Settle)
			}
			if _, err := os.Stat(filepath.Join(store.ManifestsDir, "checkpoint-kube-apiserver.yaml")); !os.IsNotExist(err) {
				t.Errorf("static pod still there: %v", err)
			}
		})
	}
}
