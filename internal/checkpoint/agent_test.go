package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/selfkube/selfkube/internal/manifests"
)

// fakeRuntime is a container runtime that runs what it is told.
type fakeRuntime struct {
	local Local
	err   error
}

func (f *fakeRuntime) Observe(context.Context) (Local, error) { return f.local, f.err }

// recordedEvents is an EventSink that keeps what it is given.
type recordedEvents struct{ reasons, messages []string }

func (e *recordedEvents) Event(reason, message string) {
	e.reasons = append(e.reasons, reason)
	e.messages = append(e.messages, message)
}

// TestAgentSync drives Agent.Sync over a fake API and runtime with a clock the test
// moves, and checks after every sync what is on disk, which events were recorded, and
// at the end the metrics.
func TestAgentSync(t *testing.T) {
	const name = manifests.CheckpointAPIServer
	// The container the API says the parent runs (see apiServerPod).
	const parentContainer = "0a1b2c3d"
	runningParent := Local{
		Running:    map[string]bool{name: true},
		Containers: map[string]bool{parentContainer: true, "sandbox-1": true},
	}

	// present writes the checkpoint the agent would have written from the parent.
	present := func(t *testing.T, s Store, pod *corev1.Pod, secret *corev1.Secret) {
		t.Helper()
		static, files, err := Sanitize(pod, name, filepath.Join(s.Dir, name), Sources{Secrets: map[string]*corev1.Secret{secret.Name: secret}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(name, static, files); err != nil {
			t.Fatal(err)
		}
	}
	active := func(t *testing.T, s Store, pod *corev1.Pod, secret *corev1.Secret) {
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
		setup   func(t *testing.T, s Store, pod *corev1.Pod, secret *corev1.Secret)
		steps   []step
		// wantMetrics are lines the metrics text must contain at the end.
		wantMetrics []string
		// wantHealthy: /healthz, the checkpointer's liveness probe, answers OK at the end.
		wantHealthy bool
		check       func(t *testing.T, s Store, secret *corev1.Secret)
	}{{
		name:        "Ready parent running here is checkpointed, not activated",
		wantHealthy: true,
		local:       runningParent,
		steps: []step{
			{wantPresent: true},
			{advance: RetireAfter + ActivateAfter, wantPresent: true}, // nothing new to write
		},
		wantMetrics: []string{
			`selfkube_checkpointer_writes_total{checkpoint="kube-apiserver"} 1`,
			`selfkube_checkpointer_checkpoint_active{checkpoint="kube-apiserver"} 0`,
			"selfkube_checkpointer_api_reachable 1",
		},
		check: func(t *testing.T, s Store, secret *corev1.Secret) {
			got := tree(t, filepath.Join(s.Dir, name, volumesDir))
			want := map[string]string{}
			for k, v := range secret.Data {
				want["secrets/"+k] = string(v)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Secret files (-want +got):\n%s", diff)
			}
			pod := readPod(t, filepath.Join(s.Dir, name, podFile))
			if pod.Name != "checkpoint-kube-apiserver" {
				t.Errorf("checkpoint pod name = %q", pod.Name)
			}
			// The static pod mounts the files just written.
			if v := pod.Spec.Volumes; len(v) != 1 || v[0].HostPath == nil || v[0].HostPath.Path != filepath.Join(s.Dir, name, volumesDir, "secrets") {
				t.Errorf("checkpoint volumes = %+v, want one hostPath of %s", v, filepath.Join(s.Dir, name, volumesDir, "secrets"))
			}
			if got := tree(t, s.ManifestsDir); len(got) != 0 {
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
		steps: []step{{}, {advance: RetireAfter}},
		wantMetrics: []string{
			"selfkube_checkpointer_api_reachable 1",
		},
		check: func(t *testing.T, s Store, _ *corev1.Secret) {
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
			{advance: RemoveAfter * 2, wantPresent: true, wantActive: true}, // an unreachable API never retires or removes
		},
		wantMetrics: []string{
			`selfkube_checkpointer_actions_total{checkpoint="kube-apiserver",action="Activate"} 1`,
			`selfkube_checkpointer_checkpoint_active{checkpoint="kube-apiserver"} 1`,
			"selfkube_checkpointer_api_reachable 0",
		},
		check: func(t *testing.T, s Store, _ *corev1.Secret) {
			want, _ := os.ReadFile(filepath.Join(s.Dir, name, podFile))
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
			{advance: RetireAfter - time.Millisecond, wantPresent: true, wantActive: true},
			{advance: time.Millisecond, wantPresent: true, wantEvents: []string{"CheckpointRetired"}},
			{advance: RetireAfter, wantPresent: true}, // stays retired and on disk
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
			{advance: RemoveAfter, wantErr: "observing the container runtime", wantPresent: true},
		},
	}, {
		name:  "runtime error with the parent Ready: nothing is retired or written",
		rtErr: errors.New("deadline exceeded"),
		setup: active,
		steps: []step{
			{wantErr: "observing the container runtime", wantPresent: true, wantActive: true},
			{advance: RetireAfter * 2, wantErr: "observing the container runtime", wantPresent: true, wantActive: true},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, _, secret := apiServerPod(t)
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
			rec := httptest.NewRecorder()
			a.Metrics.Handler(a.Now, 30*time.Second).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if got := rec.Code == http.StatusOK; got != tt.wantHealthy {
				t.Errorf("/healthz answers %d %q; want healthy %v", rec.Code, rec.Body, tt.wantHealthy)
			}
			if tt.check != nil {
				tt.check(t, store, secret)
			}
		})
	}
}

// disk is everything in the store's two directories.
func disk(t *testing.T, s Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for dir, prefix := range map[string]string{s.Dir: "checkpoints/", s.ManifestsDir: "manifests/"} {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			continue
		}
		for p, data := range tree(t, dir) {
			out[prefix+p] = data
		}
	}
	return out
}
