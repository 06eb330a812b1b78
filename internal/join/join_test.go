package join

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/status"
	"github.com/selfkube/selfkube/internal/workflow"
)

func TestRerun(t *testing.T) {
	worker := Options{Node: config.NodeConfiguration{Name: "node-b"}}
	cp := Options{Node: config.NodeConfiguration{Name: "node-b"}, ControlPlane: true}
	unnamed := Options{}
	tests := []struct {
		name    string
		st      NodeState
		opts    Options
		want    Resume
		wantErr bool
	}{
		{name: "no record, no kubeconfig", st: NodeState{}, opts: worker, want: Fresh},
		{name: "no record, kubeconfig (init or kubeadm made this node)", st: NodeState{KubeletKubeconfig: true}, opts: worker, want: Joined},
		{name: "a record never saved counts as none", st: NodeState{Record: host.Record{NodeName: "node-a", Completed: time.Unix(1700000000, 0)}}, opts: worker, want: Fresh},
		{name: "completed", st: NodeState{RecordExists: true, Record: host.Record{Completed: time.Unix(1700000000, 0), NodeName: "node-b"}, KubeletKubeconfig: true}, opts: worker, want: Joined},
		{name: "completed, kubeconfig gone", st: NodeState{RecordExists: true, Record: host.Record{Completed: time.Unix(1700000000, 0), NodeName: "node-b"}}, opts: worker, want: Joined},
		{name: "completed as another node and role", st: NodeState{RecordExists: true, Record: host.Record{Completed: time.Unix(1700000000, 0), NodeName: "node-a"}}, opts: cp, want: Joined},
		{name: "unfinished, same name and role", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-b", Done: []string{"preflight"}}}, opts: worker, want: Continue},
		{name: "unfinished control plane, same", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-b", ControlPlane: true}, KubeletKubeconfig: true}, opts: cp, want: Continue},
		{name: "unfinished with kubeconfig", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-b", Done: []string{"kubelet"}}, KubeletKubeconfig: true}, opts: worker, want: Continue},
		{name: "unfinished, recorded name empty", st: NodeState{RecordExists: true, Record: host.Record{}}, opts: worker, want: Continue},
		{name: "unfinished, no --node-name now", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-b"}}, opts: unnamed, want: Continue},
		{name: "unfinished, another --node-name", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-a"}}, opts: worker, wantErr: true},
		{name: "unfinished, another --node-name, kubeconfig", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-a"}, KubeletKubeconfig: true}, opts: worker, wantErr: true},
		{name: "unfinished worker, now --control-plane", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-b"}}, opts: cp, wantErr: true},
		{name: "unfinished control plane, now worker", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-b", ControlPlane: true}}, opts: worker, wantErr: true},
		{name: "unfinished, empty name does not hide another role", st: NodeState{RecordExists: true, Record: host.Record{}}, opts: Options{ControlPlane: true}, wantErr: true},
		{name: "unfinished, both differ", st: NodeState{RecordExists: true, Record: host.Record{NodeName: "node-a", ControlPlane: true}}, opts: worker, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Rerun(tt.st, tt.opts)
			if tt.wantErr {
				if !errors.Is(err, ErrUnfinished) {
					t.Fatalf("err = %v, want one wrapping ErrUnfinished", err)
				}
				for _, s := range []string{"run the same join command again", "selfkube reset"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got != tt.want {
				t.Errorf("Rerun = %v, want %v", got, tt.want)
			}
		})
	}
}

// saveRecord saves a join record under l.
func saveRecord(t *testing.T, l host.Layout, r host.Record) {
	t.Helper()
	rec, err := host.LoadRecord(l, "join")
	if err != nil {
		t.Fatal(err)
	}
	rec.Owned, rec.Done, rec.Completed, rec.NodeName, rec.ControlPlane = r.Owned, r.Done, r.Completed, r.NodeName, r.ControlPlane
	if err := rec.Save(); err != nil {
		t.Fatal(err)
	}
}

// files lists the regular files below root, relative to it.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRunOnAJoinedNode(t *testing.T) {
	const recordFile = "var/lib/selfkube/join.json"
	const kubeletConf = "etc/kubernetes/kubelet.conf"
	tests := []struct {
		name      string
		record    *host.Record
		kubeconf  bool
		opts      Options
		sel       workflow.Options
		wantIs    error
		wantMsg   string
		wantFiles []string
	}{
		{
			name:      "completed record",
			record:    &host.Record{Completed: time.Unix(1700000000, 0), NodeName: "node-b", Done: []string{"preflight", "kubelet"}},
			kubeconf:  true,
			opts:      Options{Node: config.NodeConfiguration{Name: "node-b"}},
			wantIs:    ErrAlreadyJoined,
			wantMsg:   "selfkube reset",
			wantFiles: []string{kubeletConf, recordFile},
		},
		{
			name:      "completed record, skipping phases",
			record:    &host.Record{Completed: time.Unix(1700000000, 0), NodeName: "node-b"},
			sel:       workflow.Options{Skip: []string{"preflight", "discovery"}},
			wantIs:    ErrAlreadyJoined,
			wantFiles: []string{recordFile},
		},
		{
			name:      "kubeconfig that no join wrote",
			kubeconf:  true,
			wantIs:    ErrAlreadyJoined,
			wantMsg:   "kubelet.conf",
			wantFiles: []string{kubeletConf},
		},
		{
			name:      "unfinished join as another node",
			record:    &host.Record{NodeName: "node-a", Done: []string{"preflight"}},
			opts:      Options{Node: config.NodeConfiguration{Name: "node-b"}},
			wantIs:    ErrUnfinished,
			wantFiles: []string{recordFile},
		},
		{
			// Resuming prints through a nil Status, then runs from preflight, which fails
			// without a pin (or without root) before anything is written.
			name:      "unfinished join, same settings, resumes",
			record:    &host.Record{NodeName: "node-b", Done: []string{"preflight"}},
			opts:      Options{Node: config.NodeConfiguration{Name: "node-b"}},
			wantMsg:   "phase preflight",
			wantFiles: []string{recordFile},
		},
		{
			// `join phase NAME` runs that phase whatever the state.
			name:      "one phase on a completed node",
			record:    &host.Record{Completed: time.Unix(1700000000, 0), NodeName: "node-b"},
			opts:      Options{Node: config.NodeConfiguration{Name: "node-b"}},
			sel:       workflow.Options{Only: "preflight"},
			wantMsg:   "phase preflight",
			wantFiles: []string{recordFile},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := host.Layout{Root: t.TempDir()}
			if tt.record != nil {
				saveRecord(t, l, *tt.record)
			}
			if tt.kubeconf {
				if _, err := host.WriteFile(l.KubeletKubeconfig(), []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var before []byte
			if tt.record != nil {
				var err error
				if before, err = os.ReadFile(filepath.Join(l.StateDir(), "join.json")); err != nil {
					t.Fatal(err)
				}
			}
			opts := tt.opts
			opts.Layout = l // Status stays nil: it must be safe
			err := Run(context.Background(), opts, tt.sel)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want one wrapping %v", err, tt.wantIs)
			}
			if tt.wantIs == nil && (errors.Is(err, ErrAlreadyJoined) || errors.Is(err, ErrUnfinished)) {
				t.Errorf("err = %v, want a phase's error", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to say %q", err, tt.wantMsg)
			}
			if d := cmp.Diff(tt.wantFiles, files(t, l.Root), cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
				t.Errorf("files on the node (-want +got):\n%s", d)
			}
			if tt.record != nil {
				after, err := os.ReadFile(filepath.Join(l.StateDir(), "join.json"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(before, after) {
					t.Errorf("the record changed:\n%s\nwas:\n%s", after, before)
				}
			}
		})
	}
}

func TestStatusNilIsSafe(t *testing.T) {
	// Run prints through opts.Status, which callers may leave nil.
	var p *status.Printer
	p.Infof("resuming %v", []string{"x"})
	err := errors.New("x")
	p.Start("step").Done(&err)
}

func TestWriteOwnsBeforeWriting(t *testing.T) {
	tests := []struct {
		name      string
		rel       string
		blocker   string // a regular file made first, so that writing below it fails
		wantErr   bool
		wantOwned bool
	}{
		{name: "written", rel: "etc/kubernetes/pki/ca.crt", wantOwned: true},
		{name: "write fails, still owned", rel: "etc/kubernetes/pki/ca.crt", blocker: "etc/kubernetes/pki", wantErr: true, wantOwned: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := host.Layout{Root: t.TempDir()}
			if tt.blocker != "" {
				if _, err := host.WriteFile(filepath.Join(l.Root, tt.blocker), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rec, err := host.LoadRecord(l, "join")
			if err != nil {
				t.Fatal(err)
			}
			d := &Data{Options: Options{Layout: l}, Record: rec}
			path := filepath.Join(l.Root, tt.rel)
			err = d.write(path, []byte("data"), 0o644)
			if (err != nil) != tt.wantErr {
				t.Fatalf("write: err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr {
				if got, err := os.ReadFile(path); err != nil || string(got) != "data" {
					t.Errorf("%s = %q, %v", path, got, err)
				}
			}
			saved, err := host.LoadRecord(l, "join")
			if err != nil {
				t.Fatal(err)
			}
			if saved.Exists() != tt.wantOwned || slices.Contains(saved.Owned, path) != tt.wantOwned {
				t.Errorf("saved record: exists %v, owned %v; want %s owned: %v", saved.Exists(), saved.Owned, path, tt.wantOwned)
			}
		})
	}

}

func TestRecordSavedOnlyOnceOwning(t *testing.T) {
	tests := []struct {
		name      string
		finished  []string
		own       []string
		wantFile  bool
		wantDone  []string
		wantOwned []string
	}{
		{name: "finished alone", finished: []string{"preflight", "discovery"}},
		{name: "finished twice", finished: []string{"preflight", "preflight"}},
		{name: "finished, then own", finished: []string{"preflight"}, own: []string{"/etc/a"}, wantFile: true,
			wantDone: []string{"preflight"}, wantOwned: []string{"/etc/a"}},
		{name: "own twice", own: []string{"/etc/a", "/etc/a", "/etc/b"}, wantFile: true, wantOwned: []string{"/etc/a", "/etc/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := host.Layout{Root: t.TempDir()}
			file := filepath.Join(l.Root, "var/lib/selfkube/join.json")
			rec, err := host.LoadRecord(l, "join")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.finished {
				if err := rec.Finished(p); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("after Finished alone, stat %s: %v; want it absent", file, err)
			}
			for _, p := range tt.own {
				if err := rec.Own(p); err != nil {
					t.Fatal(err)
				}
			}
			_, err = os.Stat(file)
			if (err == nil) != tt.wantFile {
				t.Fatalf("stat %s: %v, want it present: %v", file, err, tt.wantFile)
			}
			if !tt.wantFile {
				return
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", file, fi.Mode().Perm())
			}
			saved, err := host.LoadRecord(l, "join")
			if err != nil {
				t.Fatal(err)
			}
			if !saved.Exists() {
				t.Error("the loaded record does not exist")
			}
			if d := cmp.Diff(tt.wantDone, saved.Done, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("saved Done (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantOwned, saved.Owned, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("saved Owned (-want +got):\n%s", d)
			}
		})
	}

	t.Run("finished after own is saved", func(t *testing.T) {
		l := host.Layout{Root: t.TempDir()}
		rec, _ := host.LoadRecord(l, "join")
		if err := rec.Own("/etc/a"); err != nil {
			t.Fatal(err)
		}
		if err := rec.Finished("kubelet"); err != nil {
			t.Fatal(err)
		}
		saved, err := host.LoadRecord(l, "join")
		if err != nil {
			t.Fatal(err)
		}
		if !saved.Has("kubelet") {
			t.Errorf("saved Done = %v, want kubelet", saved.Done)
		}
	})

	t.Run("damaged record", func(t *testing.T) {
		l := host.Layout{Root: t.TempDir()}
		if _, err := host.WriteFile(filepath.Join(l.StateDir(), "join.json"), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := host.LoadRecord(l, "join")
		if err == nil || !strings.Contains(err.Error(), "selfkube reset") {
			t.Errorf("err = %v, want one saying to run selfkube reset", err)
		}
	})
}
