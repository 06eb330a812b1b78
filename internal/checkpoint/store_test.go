package checkpoint

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/checkpoint/checkpointtest"
)

func newStore(t *testing.T) Store {
	t.Helper()
	// Dir does not exist yet: the store creates it, as on a fresh node.
	return Store{Dir: filepath.Join(t.TempDir(), "checkpoints"), ManifestsDir: t.TempDir()}
}

func staticPod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: StaticPodName(name), Namespace: "kube-system"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
	}
}

// TestStoreWrite writes versions of one checkpoint in turn and checks after each what is
// on disk, with which modes, and whether the write reported a change (which the agent
// logs and counts).
func TestStoreWrite(t *testing.T) {
	const name = "kube-apiserver"
	podV1, podV2 := staticPod(name, "apiserver:v1"), staticPod(name, "apiserver:v2")
	ca := File{Path: "volumes/secrets/ca.crt", Data: []byte("CA")}
	key := File{Path: "volumes/secrets/apiserver.key", Data: []byte("KEY")}
	keyRotated := File{Path: "volumes/secrets/apiserver.key", Data: []byte("KEY2")}
	nested := File{Path: "volumes/conf/sub/config.yaml", Data: []byte("kind: X")}

	type write struct {
		pod         *corev1.Pod
		files       []File
		wantChanged bool
	}
	tests := []struct {
		name      string
		writes    []write
		wantFiles map[string]string // besides pod.yaml, under Dir/NAME
	}{{
		name:      "new checkpoint",
		writes:    []write{{podV1, []File{ca, key, nested}, true}},
		wantFiles: map[string]string{"volumes/secrets/ca.crt": "CA", "volumes/secrets/apiserver.key": "KEY", "volumes/conf/sub/config.yaml": "kind: X"},
	}, {
		name:      "identical second write is unchanged",
		writes:    []write{{podV1, []File{ca, key}, true}, {podV1, []File{ca, key}, false}},
		wantFiles: map[string]string{"volumes/secrets/ca.crt": "CA", "volumes/secrets/apiserver.key": "KEY"},
	}, {
		name:      "a file no longer in the checkpoint is pruned",
		writes:    []write{{podV1, []File{ca, key, nested}, true}, {podV1, []File{ca}, true}, {podV1, []File{ca}, false}},
		wantFiles: map[string]string{"volumes/secrets/ca.crt": "CA"},
	}, {
		name:      "a rotated Secret is rewritten",
		writes:    []write{{podV1, []File{ca, key}, true}, {podV1, []File{ca, keyRotated}, true}},
		wantFiles: map[string]string{"volumes/secrets/ca.crt": "CA", "volumes/secrets/apiserver.key": "KEY2"},
	}, {
		name:      "a changed pod alone is a change",
		writes:    []write{{podV1, []File{ca}, true}, {podV2, []File{ca}, true}},
		wantFiles: map[string]string{"volumes/secrets/ca.crt": "CA"},
	}, {
		name:      "a pod without volumes",
		writes:    []write{{podV1, nil, true}, {podV1, nil, false}},
		wantFiles: map[string]string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if s.Present(name) {
				t.Fatal("Present before any write")
			}
			var last *corev1.Pod
			for i, w := range tt.writes {
				changed, err := s.Write(name, w.pod, w.files)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				if changed != w.wantChanged {
					t.Errorf("write %d: changed = %v, want %v", i, changed, w.wantChanged)
				}
				last = w.pod
			}
			if !s.Present(name) {
				t.Error("not Present after Write")
			}
			if s.Active(name) {
				t.Error("Active after Write: writing must not start the checkpoint")
			}
			if info, err := os.Stat(s.Dir); err != nil {
				t.Error(err)
			} else if info.Mode() != 0o700|fs.ModeDir {
				t.Errorf("Dir created with mode %v, want 0700", info.Mode())
			}
			got := checkpointtest.Tree(t, s.Dir)
			want := map[string]string{}
			for p, data := range tt.wantFiles {
				want[name+"/"+p] = data
			}
			want[name+"/pod.yaml"] = got[name+"/pod.yaml"] // compared decoded below
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("files under Dir (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(last, checkpointtest.ReadPod(t, filepath.Join(s.Dir, name, "pod.yaml"))); diff != "" {
				t.Errorf("pod.yaml (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStoreActivation: activation copies the checkpoint into the kubelet's static-pod
// directory, and retiring and removing take out only what is the checkpoint's.
func TestStoreActivation(t *testing.T) {
	const name = "kube-scheduler"
	s := newStore(t)
	// Another static pod the kubelet runs, and another checkpoint: neither is touched.
	etcd := filepath.Join(s.ManifestsDir, "etcd.yaml")
	if err := os.WriteFile(etcd, []byte("etcd"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, "kube-apiserver"} {
		if _, err := s.Write(n, staticPod(n, "img"), []File{{Path: "volumes/v/f", Data: []byte(n)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Activate("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	active := filepath.Join(s.ManifestsDir, "checkpoint-kube-scheduler.yaml")
	if s.Active(name) {
		t.Fatal("Active before Activate")
	}

	t.Run("activate", func(t *testing.T) {
		if err := s.Activate(name); err != nil {
			t.Fatalf("Activate: %v", err)
		}
		if !s.Active(name) {
			t.Error("not Active after Activate")
		}
		info, err := os.Stat(active)
		if err != nil {
			t.Fatalf("the kubelet's manifest: %v", err)
		}
		if info.Mode() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", active, info.Mode())
		}
		want, _ := os.ReadFile(filepath.Join(s.Dir, name, "pod.yaml"))
		if got, _ := os.ReadFile(active); string(got) != string(want) {
			t.Errorf("%s is not a copy of pod.yaml:\n%s", active, got)
		}
		// Idempotent: a second activation (say, by boot and then the agent) is fine.
		if err := s.Activate(name); err != nil {
			t.Errorf("second Activate: %v", err)
		}
	})

	t.Run("retire", func(t *testing.T) {
		if err := s.Retire(name); err != nil {
			t.Fatalf("Retire: %v", err)
		}
		if s.Active(name) {
			t.Error("Active after Retire")
		}
		if !s.Present(name) {
			t.Error("Retire deleted the checkpoint; it must stay for the next outage")
		}
		if !s.Active("kube-apiserver") {
			t.Error("Retire retired another checkpoint")
		}
		if _, err := os.Stat(etcd); err != nil {
			t.Errorf("Retire touched another static pod: %v", err)
		}
		if err := s.Retire(name); err != nil {
			t.Errorf("Retire of a retired checkpoint: %v", err)
		}
	})

	t.Run("remove", func(t *testing.T) {
		if err := s.Activate(name); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(name); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if s.Active(name) || s.Present(name) {
			t.Errorf("after Remove: Active %v, Present %v; want neither", s.Active(name), s.Present(name))
		}
		if _, err := os.Stat(filepath.Join(s.Dir, name)); !os.IsNotExist(err) {
			t.Errorf("the checkpoint's directory is left: %v", err)
		}
		if !s.Present("kube-apiserver") || !s.Active("kube-apiserver") {
			t.Error("Remove touched another checkpoint")
		}
		if _, err := os.Stat(etcd); err != nil {
			t.Errorf("Remove touched another static pod: %v", err)
		}
		if err := s.Remove(name); err != nil {
			t.Errorf("Remove of a removed checkpoint: %v", err)
		}
	})

	t.Run("activate a missing checkpoint", func(t *testing.T) {
		err := s.Activate("nope")
		if err == nil || !strings.Contains(err.Error(), "activating checkpoint nope") {
			t.Errorf("Activate of a missing checkpoint: error %v, want one about activating checkpoint nope", err)
		}
		if s.Active("nope") {
			t.Error("a missing checkpoint became Active")
		}
	})
}

// TestStoreNames: the agent decides over every checkpoint it can find, so a static pod
// left active without its checkpoint directory (nothing can refresh it) is listed too.
func TestStoreNames(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s Store)
		want  []string
	}{{
		name:  "nothing on a fresh node",
		setup: func(*testing.T, Store) {},
		want:  []string{},
	}, {
		name: "on disk, active, incomplete, and active only",
		setup: func(t *testing.T, s Store) {
			for _, n := range []string{"kube-scheduler", "kube-apiserver"} {
				if _, err := s.Write(n, staticPod(n, "img"), nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Activate("kube-apiserver"); err != nil {
				t.Fatal(err)
			}
			// A write interrupted before pod.yaml: listed, so that it is decided on.
			mkdir(t, filepath.Join(s.Dir, "kube-controller-manager", "volumes"))
			// Active with its directory gone.
			writeFile(t, filepath.Join(s.ManifestsDir, "checkpoint-orphan.yaml"), "")
		},
		want: []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "orphan"},
	}, {
		// Never listed, so never decided on, retired or removed.
		name: "not checkpoints: invalid names",
		setup: func(t *testing.T, s Store) {
			for _, n := range []string{"Kube-apiserver", "a_b", "x..y", "-a", strings.Repeat("a", 64)} {
				mkdir(t, filepath.Join(s.Dir, n))
				writeFile(t, filepath.Join(s.ManifestsDir, "checkpoint-"+n+".yaml"), "")
			}
			writeFile(t, filepath.Join(s.ManifestsDir, "checkpoint-.yaml"), "")
			writeFile(t, filepath.Join(s.ManifestsDir, "checkpoint-a.b.yaml"), "")
		},
		want: []string{},
	}, {
		name: "not checkpoints: other static pods, hidden entries, plain files",
		setup: func(t *testing.T, s Store) {
			writeFile(t, filepath.Join(s.ManifestsDir, "etcd.yaml"), "")
			writeFile(t, filepath.Join(s.ManifestsDir, "checkpoint-x.yaml.bak"), "")
			writeFile(t, filepath.Join(s.ManifestsDir, ".checkpoint-x.yaml.123"), "")
			mkdir(t, filepath.Join(s.Dir, ".tmp"))
			writeFile(t, filepath.Join(s.Dir, "stray"), "")
			unlock, err := s.Lock() // the lock file lives in Dir
			if err != nil {
				t.Fatal(err)
			}
			unlock()
		},
		want: []string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			tt.setup(t, s)
			got, err := s.Names()
			if err != nil {
				t.Fatalf("Names: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Names (-want +got):\n%s", diff)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, file, data string) {
	t.Helper()
	mkdir(t, filepath.Dir(file))
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// badNames are names no checkpoint may have. The first ones, joined into a path, would
// name files outside the checkpoint's directory.
var badNames = []string{
	"x/../etcd",                     // Dir/etcd, and ManifestsDir/etcd.yaml when active
	"../checkpoints/kube-apiserver", // the real checkpoint's directory, from Dir
	"x/../kube-apiserver",
	"..", ".", "a/b", "/etc", "",
	"Kube-apiserver", "KUBE",
	strings.Repeat("a", 64),
	".hidden", "-a", "a-", "a.b", "a_b", "a b", "kube-apiserver\n", "é",
}

func TestValidName(t *testing.T) {
	good := []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "a", "0", "a-b", "1a--2", strings.Repeat("a", 63)}
	for _, name := range good {
		t.Run("valid "+name, func(t *testing.T) {
			if err := ValidName(name); err != nil {
				t.Errorf("ValidName(%q) = %v, want nil", name, err)
			}
		})
	}
	for _, name := range badNames {
		t.Run("invalid "+name, func(t *testing.T) {
			err := ValidName(name)
			if err == nil {
				t.Fatalf("ValidName(%q) = nil, want an error", name)
			}
			if !strings.Contains(err.Error(), "invalid checkpoint name") {
				t.Errorf("error %q does not say what is invalid", err)
			}
		})
	}
}

// TestEntry: the second line of defence, behind ValidName, admits only entries directly
// inside the directory.
func TestEntry(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"kube-apiserver", true},
		{"checkpoint-kube-apiserver.yaml", true},
		{"", false}, {".", false}, {"..", false}, {"a/b", false}, {"a/", false},
		{"x/../etcd", false}, {"../d/kube-apiserver", false}, {"/etc", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := entry("/etc/kubernetes/d", tt.name)
			switch {
			case tt.ok && (err != nil || got != "/etc/kubernetes/d/"+tt.name):
				t.Errorf("entry = %q, %v; want /etc/kubernetes/d/%s", got, err, tt.name)
			case !tt.ok && err == nil:
				t.Errorf("entry = %q, want an error", got)
			}
		})
	}
}

// realNode is a node's checkpoint and static-pod directories side by side, as under
// /etc/kubernetes, with etcd's static pod and an active checkpoint of the apiserver.
func realNode(t *testing.T) Store {
	t.Helper()
	root := t.TempDir()
	s := Store{Dir: filepath.Join(root, "checkpoints"), ManifestsDir: filepath.Join(root, "manifests")}
	writeFile(t, filepath.Join(s.ManifestsDir, "etcd.yaml"), "etcd")
	if _, err := s.Write("kube-apiserver", staticPod("kube-apiserver", "img"), []File{{Path: "volumes/v/f", Data: []byte("secret")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	return s
}

// TestStoreRefusesInvalidNames: no method joins an invalid name into a path, so nothing
// outside a checkpoint's own directory is ever read, written or removed through one.
func TestStoreRefusesInvalidNames(t *testing.T) {
	for _, name := range badNames {
		t.Run(name, func(t *testing.T) {
			s := realNode(t)
			root := filepath.Dir(s.Dir)
			before := checkpointtest.Snapshot(t, root)
			if s.Present(name) {
				t.Error("Present")
			}
			if s.Active(name) {
				t.Error("Active")
			}
			if _, err := s.Write(name, staticPod("x", "img"), nil); err == nil {
				t.Error("Write succeeded")
			}
			for op, f := range map[string]func(string) error{"Activate": s.Activate, "Retire": s.Retire, "Remove": s.Remove} {
				if err := f(name); err == nil || !strings.Contains(err.Error(), "invalid checkpoint name") {
					t.Errorf("%s: error %v, want one about an invalid checkpoint name", op, err)
				}
			}
			if diff := cmp.Diff(before, checkpointtest.Snapshot(t, root)); diff != "" {
				t.Errorf("the disk changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestStoreWriteRefusesFilesOutside: a file of a checkpoint stays in its directory.
func TestStoreWriteRefusesFilesOutside(t *testing.T) {
	for _, p := range []string{"../kube-scheduler/pod.yaml", "volumes/../../x", "/etc/passwd", ""} {
		t.Run(p, func(t *testing.T) {
			s := realNode(t)
			root := filepath.Dir(s.Dir)
			before := checkpointtest.Snapshot(t, root)
			if _, err := s.Write("kube-apiserver", staticPod("kube-apiserver", "img2"), []File{{Path: p, Data: []byte("x")}}); err == nil {
				t.Error("Write succeeded")
			}
			if diff := cmp.Diff(before, checkpointtest.Snapshot(t, root)); diff != "" {
				t.Errorf("the disk changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestStoreTightensModes: the kubelet creates the checkpoint directory 0755 for the
// DaemonSet's hostPath, and MkdirAll leaves an existing directory as it is.
func TestStoreTightensModes(t *testing.T) {
	for _, op := range []string{"Lock", "Write"} {
		t.Run(op, func(t *testing.T) {
			s := newStore(t)
			dirs := []string{s.Dir}
			if op == "Write" {
				dirs = append(dirs, filepath.Join(s.Dir, "kube-apiserver"))
			}
			for _, d := range dirs {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			switch op {
			case "Lock":
				unlock, err := s.Lock()
				if err != nil {
					t.Fatal(err)
				}
				unlock()
			case "Write":
				if _, err := s.Write("kube-apiserver", staticPod("kube-apiserver", "img"), nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range dirs {
				info, err := os.Stat(d)
				if err != nil {
					t.Fatal(err)
				}
				if info.Mode() != 0o700|fs.ModeDir {
					t.Errorf("%s: mode %v after %s, want 0700", d, info.Mode(), op)
				}
			}
		})
	}
}
