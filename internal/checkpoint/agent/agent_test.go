package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/checkpoint/checkpointtest"
	"github.com/selfkube/selfkube/internal/manifests"
)

// fakeRuntime is a container runtime that runs what it is told.
type fakeRuntime struct {
	local Local
	err   error
}

func (f *fakeRuntime) Observe(context.Context) (Local, error) { return f.local, f.err }

// recordedEvents is an EventSink that keeps what it is given.
type recordedEvents struct{ types, reasons, messages []string }

func (e *recordedEvents) Event(eventType, reason, message string) {
	e.types = append(e.types, eventType)
	e.reasons = append(e.reasons, reason)
	e.messages = append(e.messages, message)
}

// TestAgentSync drives Agent.Sync over a fake API and runtime with a clock the test
// moves, and checks after every sync what is on disk, which events were recorded, and
// at the end the metrics.
func TestAgentSync(t *testing.T) {
	const name = checkpoint.CheckpointAPIServer
	// The container the API says the parent runs (see apiServerPod).
	const parentContainer = "0a1b2c3d"
	runningParent := Local{
		Running:    map[string]bool{name: true},
		Containers: map[string]bool{parentContainer: true, "sandbox-1": true},
	}

	// present writes the checkpoint the agent would have written from the parent.
	present := func(t *testing.T, s checkpoint.Store, pod *corev1.Pod, secret *corev1.Secret) {
		t.Helper()
		static, files, err := checkpoint.Sanitize(pod, name, filepath.Join(s.Dir, name), checkpoint.Sources{Secrets: map[string]*corev1.Secret{secret.Name: secret}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(name, static, files); err != nil {
			t.Fatal(err)
		}
	}
	active := func(t *testing.T, s checkpoint.Store, pod *corev1.Pod, secret *corev1.Secret) {
		t.Helper()
		present(t, s, pod, secret)
		if err := s.Activate(name); err != nil {
			t.Fatal(err)
		}
	}

	type step struct {
		advance     time.Duration // the clock moves this much before the sync
		wantErr     string        // and then nothing on disk may change
		wantPresent bool
		wantActive  bool
		wantEvents  []string // reasons recorded during this sync
	}
	tests := []struct {
		name    string
		listErr bool // the API does not answer
		local   Local
		rtErr   error
		setup   func(t *testing.T, s checkpoint.Store, pod *corev1.Pod, secret *corev1.Secret)
		steps   []step
		// wantMetrics are lines the metrics text must contain at the end.
		wantMetrics []string
		// wantHealthy: /healthz, the checkpointer's liveness probe, answers OK at the end.
		wantHealthy bool
		check       func(t *testing.T, s checkpoint.Store, secret *corev1.Secret)
	}{{
		name:        "Ready parent running here is checkpointed, not activated",
		wantHealthy: true,
		local:       runningParent,
		steps: []step{
			{wantPresent: true},
			{advance: checkpoint.RetireAfter + checkpoint.ActivateAfter, wantPresent: true}, // nothing new to write
		},
		wantMetrics: []string{
			`selfkube_checkpointer_writes_total{checkpoint="kube-apiserver"} 1`,
			`selfkube_checkpointer_checkpoint_active{checkpoint="kube-apiserver"} 0`,
			"selfkube_checkpointer_api_reachable 1",
		},
		check: func(t *testing.T, s checkpoint.Store, secret *corev1.Secret) {
			got := checkpointtest.Tree(t, filepath.Join(s.Dir, name, "volumes"))
			want := map[string]string{}
			for k, v := range secret.Data {
				want["secrets/"+k] = string(v)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Secret files (-want +got):\n%s", diff)
			}
			pod := checkpointtest.ReadPod(t, filepath.Join(s.Dir, name, "pod.yaml"))
			if pod.Name != "checkpoint-kube-apiserver" {
				t.Errorf("checkpoint pod name = %q", pod.Name)
			}
			// The static pod mounts the files just written.
			// (and the audit log's host directory, second)
			if v := pod.Spec.Volumes; len(v) != 2 || v[0].HostPath == nil || v[0].HostPath.Path != filepath.Join(s.Dir, name, "volumes", "secrets") {
				t.Errorf("checkpoint volumes = %+v, want first a hostPath of %s", v, filepath.Join(s.Dir, name, "volumes", "secrets"))
			}
			if got := checkpointtest.Tree(t, s.ManifestsDir); len(got) != 0 {
				t.Errorf("static pods written while the parent runs: %v", got)
			}
		},
	}, {
		// After a reboot the API still shows Ready with the containers from before it,
		// and the kubelet already runs new ones it has not reported: that status is not
		// evidence that the pod works here, so nothing is copied from it.
		name:        "Ready parent whose containers do not run here is not checkpointed",
		wantHealthy: true,
		local: Local{
			Running:    map[string]bool{name: true},
			Containers: map[string]bool{"e5f6a7b8": true},
		},
		steps: []step{{}, {advance: checkpoint.RetireAfter}},
		wantMetrics: []string{
			"selfkube_checkpointer_api_reachable 1",
		},
		check: func(t *testing.T, s checkpoint.Store, _ *corev1.Secret) {
			if _, err := os.Stat(filepath.Join(s.Dir, name)); !os.IsNotExist(err) {
				t.Errorf("a checkpoint directory was created: %v", err)
			}
		},
	}, {
		name:        "API unreachable and nothing running: the checkpoint is activated once",
		wantHealthy: true,
		listErr:     true,
		local:       Local{Running: map[string]bool{}, Containers: map[string]bool{}},
		setup:       present,
		steps: []step{
			{wantPresent: true, wantActive: true, wantEvents: []string{"CheckpointActivated"}},
			{advance: checkpoint.RemoveAfter * 2, wantPresent: true, wantActive: true}, // an unreachable API never retires or removes
		},
		wantMetrics: []string{
			`selfkube_checkpointer_actions_total{checkpoint="kube-apiserver",action="Activate"} 1`,
			`selfkube_checkpointer_checkpoint_active{checkpoint="kube-apiserver"} 1`,
			"selfkube_checkpointer_api_reachable 0",
		},
		check: func(t *testing.T, s checkpoint.Store, _ *corev1.Secret) {
			want, _ := os.ReadFile(filepath.Join(s.Dir, name, "pod.yaml"))
			got, err := os.ReadFile(filepath.Join(s.ManifestsDir, "checkpoint-kube-apiserver.yaml"))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("the kubelet's manifest is not the checkpoint's pod (err %v)", err)
			}
		},
	}, {
		name:        "active checkpoint retired once the parent has been Ready for RetireAfter",
		wantHealthy: true,
		local:       runningParent,
		setup:       active,
		steps: []step{
			{wantPresent: true, wantActive: true, wantEvents: []string{"CheckpointActive"}},
			{advance: checkpoint.RetireAfter - time.Millisecond, wantPresent: true, wantActive: true},
			{advance: time.Millisecond, wantPresent: true, wantEvents: []string{"CheckpointRetired"}},
			{advance: checkpoint.RetireAfter, wantPresent: true}, // stays retired and on disk
		},
		wantMetrics: []string{
			`selfkube_checkpointer_actions_total{checkpoint="kube-apiserver",action="Retire"} 1`,
			`selfkube_checkpointer_checkpoint_active{checkpoint="kube-apiserver"} 0`,
		},
	}, {
		name:    "runtime error with the API down: nothing is activated",
		listErr: true,
		rtErr:   errors.New("connection refused"),
		setup:   present,
		steps: []step{
			{wantErr: "observing the container runtime: connection refused", wantPresent: true},
			{advance: checkpoint.RemoveAfter, wantErr: "observing the container runtime", wantPresent: true},
		},
	}, {
		name:  "runtime error with the parent Ready: nothing is retired or written",
		rtErr: errors.New("deadline exceeded"),
		setup: active,
		steps: []step{
			{wantErr: "observing the container runtime", wantPresent: true, wantActive: true},
			{advance: checkpoint.RetireAfter * 2, wantErr: "observing the container runtime", wantPresent: true, wantActive: true},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, _, secret := checkpointtest.APIServerPod(t)
			// The API has the apiserver's pod, bound to this node and Ready, and its Secret.
			client := fake.NewClientset(pod, secret)
			if tt.listErr {
				client.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("dial tcp 172.31.0.2:6443: connect: connection refused")
				})
			}
			store := newStore(t)
			if tt.setup != nil {
				tt.setup(t, store, pod, secret)
			}
			events := &recordedEvents{}
			now := t0
			a := &Agent{
				Client:       client,
				Runtime:      &fakeRuntime{local: tt.local, err: tt.rtErr},
				Store:        store,
				NodeName:     testNode,
				Namespace:    manifests.Namespace,
				Interval:     time.Second,
				Timeout:      time.Minute,
				RefreshEvery: time.Hour,
				Log:          slog.New(slog.DiscardHandler),
				Events:       events,
				Metrics:      NewMetrics(),
				Now:          func() time.Time { return now },
			}

			for i, st := range tt.steps {
				now = now.Add(st.advance)
				var before map[string]string
				if st.wantErr != "" {
					before = disk(t, store)
				}
				seen := len(events.reasons)
				err := a.Sync(context.Background())
				switch {
				case st.wantErr == "" && err != nil:
					t.Fatalf("sync %d: %v", i, err)
				case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
					t.Fatalf("sync %d: error %v, want one containing %q", i, err, st.wantErr)
				case st.wantErr != "":
					if diff := cmp.Diff(before, disk(t, store)); diff != "" {
						t.Errorf("sync %d failed but changed the disk (-before +after):\n%s", i, diff)
					}
				}
				if got := store.Present(name); got != st.wantPresent {
					t.Errorf("sync %d: Present = %v, want %v", i, got, st.wantPresent)
				}
				if got := store.Active(name); got != st.wantActive {
					t.Errorf("sync %d: Active = %v, want %v", i, got, st.wantActive)
				}
				if diff := cmp.Diff(st.wantEvents, events.reasons[seen:], cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("sync %d: events (-want +got):\n%s", i, diff)
				}
			}
			for _, m := range events.messages {
				if !strings.Contains(m, name) || !strings.Contains(m, testNode) {
					t.Errorf("event %q does not name the checkpoint and the node", m)
				}
			}

			var b strings.Builder
			if _, err := a.Metrics.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			for _, line := range tt.wantMetrics {
				if !strings.Contains(b.String(), line+"\n") {
					t.Errorf("metrics lack %q:\n%s", line, b.String())
				}
			}
			if err := a.Healthy(); (err == nil) != tt.wantHealthy {
				t.Errorf("Healthy() = %v; want healthy %v", err, tt.wantHealthy)
			}
			if tt.check != nil {
				tt.check(t, store, secret)
			}
		})
	}
}

// disk is everything in the store's two directories.
func disk(t *testing.T, s checkpoint.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for dir, prefix := range map[string]string{s.Dir: "checkpoints/", s.ManifestsDir: "manifests/"} {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			continue
		}
		for p, data := range checkpointtest.Tree(t, dir) {
			out[prefix+p] = data
		}
	}
	return out
}

const (
	testNode  = checkpointtest.Node
	otherNode = "cp-2"
)

// t0 is when the fixtures' apiserver pod was created; the tests' clocks start there.
var t0 = checkpointtest.Created

// newStore is an empty store. Dir does not exist yet: the store creates it, as on a
// fresh node.
func newStore(t *testing.T) checkpoint.Store {
	t.Helper()
	return checkpoint.Store{Dir: filepath.Join(t.TempDir(), "checkpoints"), ManifestsDir: t.TempDir()}
}

// realNode is a node's checkpoint and static-pod directories side by side, as under
// /etc/kubernetes, with etcd's static pod and an active checkpoint of the apiserver.
func realNode(t *testing.T) checkpoint.Store {
	t.Helper()
	root := t.TempDir()
	s := checkpoint.Store{Dir: filepath.Join(root, "checkpoints"), ManifestsDir: filepath.Join(root, "manifests")}
	if err := os.MkdirAll(s.ManifestsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.ManifestsDir, "etcd.yaml"), []byte("etcd"), 0o600); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: checkpoint.StaticPodName(checkpoint.CheckpointAPIServer), Namespace: manifests.Namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "img"}}},
	}
	if _, err := s.Write(checkpoint.CheckpointAPIServer, pod, []checkpoint.File{{Path: "volumes/v/f", Data: []byte("secret")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(checkpoint.CheckpointAPIServer); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	return s
}

// annotatedPod is a Ready pod of podName bound to node and annotated with the checkpoint
// name, controlled by a DaemonSet, whose one container is "c-" + podName.
func annotatedPod(podName, node, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: podName, Namespace: manifests.Namespace, UID: types.UID("uid-" + podName),
			Annotations: map[string]string{checkpoint.AnnotationCheckpoint: name},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-apiserver", UID: "uid-ds", Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Ready: true, ContainerID: "containerd://c-" + podName}},
		},
	}
}

// mirrorPod is what a kubelet (or anyone with its identity) may create: a pod bound to
// itself with any annotations, owned by its Node at most (NodeRestriction).
func mirrorPod(podName, node, name string) *corev1.Pod {
	p := annotatedPod(podName, node, name)
	p.Annotations[corev1.MirrorPodAnnotationKey] = "5e1f"
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node, UID: "uid-node", Controller: ptr.To(true)}}
	return p
}

// TestAgentParents: which annotated pods count, and for what.
func TestAgentParents(t *testing.T) {
	with := func(p *corev1.Pod, f func(*corev1.Pod)) *corev1.Pod { f(p); return p }
	controller := func(apiVersion, kind string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: "o", UID: "uid-o", Controller: ptr.To(true)}}
		}
	}
	type want struct{ bound, ready, readyElsewhere bool }
	tests := []struct {
		name        string
		pod         *corev1.Pod
		want        map[string]want
		wantIgnored string // in the reason, if ignored
	}{{
		name: "DaemonSet pod here",
		pod:  annotatedPod("a", testNode, "kube-apiserver"),
		want: map[string]want{"kube-apiserver": {bound: true, ready: true}},
	}, {
		name: "ReplicaSet pod here",
		pod:  with(annotatedPod("a", testNode, "kube-scheduler"), controller("apps/v1", "ReplicaSet")),
		want: map[string]want{"kube-scheduler": {bound: true, ready: true}},
	}, {
		name: "DaemonSet pod elsewhere: Ready elsewhere only",
		pod:  annotatedPod("a", otherNode, "kube-apiserver"),
		want: map[string]want{"kube-apiserver": {readyElsewhere: true}},
	}, {
		name: "pod being deleted: neither counted nor reported",
		pod:  with(annotatedPod("a", testNode, "kube-apiserver"), func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0} }),
		want: map[string]want{},
	}, {
		name:        "mirror pod here",
		pod:         mirrorPod("a", testNode, "kube-apiserver"),
		wantIgnored: "mirror pod",
	}, {
		name:        "mirror pod elsewhere",
		pod:         mirrorPod("a", otherNode, "kube-apiserver"),
		wantIgnored: "mirror pod",
	}, {
		name:        "mirror pod claiming a DaemonSet",
		pod:         with(mirrorPod("a", otherNode, "kube-apiserver"), controller("apps/v1", "DaemonSet")),
		wantIgnored: "mirror pod",
	}, {
		name:        "no owner",
		pod:         with(annotatedPod("a", testNode, "kube-apiserver"), func(p *corev1.Pod) { p.OwnerReferences = nil }),
		wantIgnored: "not a DaemonSet or a ReplicaSet",
	}, {
		name: "a DaemonSet owner that is not the controller",
		pod: with(annotatedPod("a", testNode, "kube-apiserver"), func(p *corev1.Pod) {
			p.OwnerReferences[0].Controller = nil
		}),
		wantIgnored: "not a DaemonSet or a ReplicaSet",
	}, {
		name:        "a Job",
		pod:         with(annotatedPod("a", testNode, "kube-apiserver"), controller("batch/v1", "Job")),
		wantIgnored: "not a DaemonSet or a ReplicaSet",
	}, {
		name:        "a DaemonSet of another API group",
		pod:         with(annotatedPod("a", testNode, "kube-apiserver"), controller("example.com/v1", "DaemonSet")),
		wantIgnored: "not a DaemonSet or a ReplicaSet",
	}, {
		name:        "another namespace",
		pod:         with(annotatedPod("a", testNode, "kube-apiserver"), func(p *corev1.Pod) { p.Namespace = "default" }),
		wantIgnored: "not in namespace kube-system",
	}, {
		name:        "name leaving the directory",
		pod:         annotatedPod("a", testNode, "x/../etcd"),
		wantIgnored: `invalid checkpoint name "x/../etcd"`,
	}, {
		name:        "name leaving the directory, elsewhere",
		pod:         annotatedPod("a", otherNode, "../checkpoints/kube-apiserver"),
		wantIgnored: "invalid checkpoint name",
	}, {
		name:        "upper case",
		pod:         annotatedPod("a", testNode, "Kube-apiserver"),
		wantIgnored: "invalid checkpoint name",
	}, {
		name:        "empty name",
		pod:         annotatedPod("a", testNode, ""),
		wantIgnored: "invalid checkpoint name",
	}, {
		name: "not annotated",
		pod: with(annotatedPod("a", testNode, ""), func(p *corev1.Pod) {
			delete(p.Annotations, checkpoint.AnnotationCheckpoint)
			p.OwnerReferences = nil
		}),
		want: map[string]want{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{NodeName: testNode, Namespace: manifests.Namespace}
			local := Local{Running: map[string]bool{}, Containers: map[string]bool{"c-a": true}}
			byName, ignored := a.parents([]corev1.Pod{*tt.pod}, local)
			got := map[string]want{}
			for name, p := range byName {
				got[name] = want{bound: p.bound, ready: p.ready != nil, readyElsewhere: p.readyElsewhere}
			}
			wantParents := tt.want
			if tt.wantIgnored != "" {
				wantParents = map[string]want{}
			}
			if diff := cmp.Diff(wantParents, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("parents (-want +got):\n%s", diff)
			}
			switch {
			case tt.wantIgnored == "" && len(ignored) > 0:
				t.Errorf("ignored: %+v", ignored)
			case tt.wantIgnored != "" && (len(ignored) != 1 || !strings.Contains(ignored[0].why, tt.wantIgnored)):
				t.Errorf("ignored %+v, want the pod ignored because %q", ignored, tt.wantIgnored)
			}
		})
	}
}

// TestAgentIgnoresForgedPods: pods any node can create (mirror pods, with any name in
// the annotation) never make the agent write, retire or remove anything. Before names
// were checked, "x/../etcd" made the checkpoint "active" by etcd's own static pod, which
// was then retired: deleted, on every control-plane node.
func TestAgentIgnoresForgedPods(t *testing.T) {
	forged := func(node string) []*corev1.Pod {
		return []*corev1.Pod{
			mirrorPod("etcd-"+node, node, "x/../etcd"),
			mirrorPod("apiserver-"+node, node, checkpoint.CheckpointAPIServer),
			mirrorPod("dir-"+node, node, "../checkpoints/kube-apiserver"),
		}
	}
	tests := []struct {
		name string
		pods []*corev1.Pod
	}{
		{"mirror pods on this node", forged(testNode)},
		{"mirror pods on another node", forged(otherNode)},
		{"mirror pods on both", append(forged(testNode), forged(otherNode)...)},
		{"DaemonSet pods with names leaving the directory", []*corev1.Pod{
			annotatedPod("etcd-here", testNode, "x/../etcd"),
			annotatedPod("etcd-there", otherNode, "x/../etcd"),
			annotatedPod("dir-here", testNode, "../checkpoints/kube-apiserver"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The apiserver's checkpoint stands in: its DaemonSet pod here is gone.
			store := realNode(t)
			root := filepath.Dir(store.Dir)
			before := checkpointtest.Snapshot(t, root)
			var objs []runtime.Object
			local := Local{Running: map[string]bool{}, Containers: map[string]bool{}}
			for _, p := range tt.pods {
				objs = append(objs, p)
				local.Containers["c-"+p.Name] = true // what claims to run here does
			}
			events := &recordedEvents{}
			now := t0
			a := &Agent{
				Client: fake.NewClientset(objs...), Runtime: &fakeRuntime{local: local}, Store: store,
				NodeName: testNode, Namespace: manifests.Namespace,
				Interval: time.Second, Timeout: time.Minute, RefreshEvery: time.Hour,
				Log: slog.New(slog.DiscardHandler), Events: events, Metrics: NewMetrics(),
				Now: func() time.Time { return now },
			}
			for i, advance := range []time.Duration{0, checkpoint.RetireAfter + checkpoint.ActivateAfter, checkpoint.RetireAfter} {
				now = now.Add(advance)
				if err := a.Sync(context.Background()); err != nil {
					t.Fatalf("sync %d: %v", i, err)
				}
				if diff := cmp.Diff(before, checkpointtest.Snapshot(t, root)); diff != "" {
					t.Fatalf("sync %d changed the disk (-before +after):\n%s", i, diff)
				}
			}
			if data, err := os.ReadFile(filepath.Join(store.ManifestsDir, "etcd.yaml")); err != nil || string(data) != "etcd" {
				t.Errorf("etcd's static pod: %q, %v", data, err)
			}
			if !store.Present(checkpoint.CheckpointAPIServer) || !store.Active(checkpoint.CheckpointAPIServer) {
				t.Errorf("the apiserver's checkpoint: present %v, active %v; want both", store.Present(checkpoint.CheckpointAPIServer), store.Active(checkpoint.CheckpointAPIServer))
			}
			// One Event per forged pod, at the first sync only, then the checkpoint's.
			want := slices.Repeat([]string{"CheckpointIgnored"}, len(tt.pods))
			want = append(want, "CheckpointActive")
			if diff := cmp.Diff(want, events.reasons); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			// The pod list comes sorted by name, so the events too.
			for _, p := range tt.pods {
				i := slices.IndexFunc(events.messages, func(m string) bool { return strings.Contains(m, "pod kube-system/"+p.Name+" ") })
				if i < 0 || events.types[i] != corev1.EventTypeWarning {
					t.Errorf("no Warning names pod kube-system/%s: %q", p.Name, events.messages)
				}
			}
			var b strings.Builder
			if _, err := a.Metrics.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "etcd") || strings.Contains(b.String(), "..") {
				t.Errorf("metrics name a forged checkpoint:\n%s", b.String())
			}
		})
	}
}

// TestAgentIgnoredOncePerPod: a kube-system pod with the annotation but no DaemonSet or
// ReplicaSet controlling it is not checkpointed, and reported once, not at every sync.
func TestAgentIgnoredOncePerPod(t *testing.T) {
	pod, _, secret := checkpointtest.APIServerPod(t)
	pod.OwnerReferences = nil // created by hand
	client := fake.NewClientset(pod, secret)
	store := newStore(t)
	events := &recordedEvents{}
	now := t0
	a := &Agent{
		Client: client, Store: store, NodeName: testNode, Namespace: manifests.Namespace,
		Runtime:  &fakeRuntime{local: Local{Running: map[string]bool{checkpoint.CheckpointAPIServer: true}, Containers: map[string]bool{"0a1b2c3d": true}}},
		Interval: time.Second, Timeout: time.Minute, RefreshEvery: time.Hour,
		Log: slog.New(slog.DiscardHandler), Events: events, Metrics: NewMetrics(),
		Now: func() time.Time { return now },
	}
	sync := func(wantEvents int) {
		t.Helper()
		now = now.Add(checkpoint.RetireAfter)
		if err := a.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(events.reasons) != wantEvents {
			t.Fatalf("%d events %q, want %d", len(events.reasons), events.reasons, wantEvents)
		}
	}
	sync(1)
	sync(1)
	sync(1)
	if events.reasons[0] != "CheckpointIgnored" || events.types[0] != corev1.EventTypeWarning {
		t.Errorf("event %s %s, want a Warning CheckpointIgnored", events.types[0], events.reasons[0])
	}
	for _, s := range []string{"kube-system/" + pod.Name, "not a DaemonSet or a ReplicaSet", testNode} {
		if !strings.Contains(events.messages[0], s) {
			t.Errorf("event %q does not contain %q", events.messages[0], s)
		}
	}
	if store.Present(checkpoint.CheckpointAPIServer) {
		t.Error("the ignored pod was checkpointed")
	}

	// Another such pod (a new UID) is reported again; the set of reported pods follows
	// the pod list, so it does not grow.
	if err := client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sync(1)
	if len(a.ignored) != 0 {
		t.Errorf("still remembered: %v", a.ignored)
	}
	pod.UID, pod.ResourceVersion = "5d0b6a4e-0000-4000-8000-000000000002", ""
	if _, err := client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sync(2)
	sync(2)
}

// TestAgentRemotePods: pods of other nodes only tell that a component is Ready
// elsewhere. A name only they have never becomes a checkpoint of this node; a name this
// node has is retired when its parent is Ready elsewhere and none is bound here.
func TestAgentRemotePods(t *testing.T) {
	store := realNode(t)
	events := &recordedEvents{}
	a := &Agent{
		Client: fake.NewClientset(
			annotatedPod("foo-1", otherNode, "kube-foo"),
			annotatedPod("apiserver-1", otherNode, checkpoint.CheckpointAPIServer),
		),
		Runtime: &fakeRuntime{local: Local{Running: map[string]bool{}, Containers: map[string]bool{}}},
		Store:   store, NodeName: testNode, Namespace: manifests.Namespace,
		Interval: time.Second, Timeout: time.Minute, RefreshEvery: time.Hour,
		Log: slog.New(slog.DiscardHandler), Events: events, Metrics: NewMetrics(),
		Now: func() time.Time { return t0 },
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	names, err := store.Names()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{checkpoint.CheckpointAPIServer}, names); diff != "" {
		t.Errorf("checkpoints (-want +got):\n%s", diff)
	}
	if _, seen := a.states["kube-foo"]; seen {
		t.Error("a name only another node has was decided on")
	}
	if store.Active(checkpoint.CheckpointAPIServer) || !store.Present(checkpoint.CheckpointAPIServer) {
		t.Errorf("the apiserver's checkpoint: active %v, present %v; want retired and kept", store.Active(checkpoint.CheckpointAPIServer), store.Present(checkpoint.CheckpointAPIServer))
	}
	if diff := cmp.Diff([]string{"CheckpointActive", "CheckpointRetired"}, events.reasons); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
