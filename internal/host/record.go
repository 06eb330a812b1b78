package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Record is what one selfkube command (init, join) did on this node, kept between runs in
// StateDir as <command>.json (0600, no secrets): the files it wrote, the phases that
// finished, and when the whole run finished. It is the one ledger of a node: a run that
// stopped half-way resumes from it, and `selfkube reset` removes what it owns.
type Record struct {
	// Owned lists the files the command wrote, by path.
	Owned []string `json:"owned,omitempty"`
	// Done lists the phases that finished, in order.
	Done []string `json:"done,omitempty"`
	// Completed is when a run of the whole workflow finished; zero until then.
	Completed time.Time `json:"completed,omitzero"`
	// NodeName and ControlPlane say what the run made this node.
	NodeName     string `json:"nodeName,omitempty"`
	ControlPlane bool   `json:"controlPlane,omitempty"`
	// HandOver is init's hand-over from its temporary control plane, once it began.
	HandOver *HandOver `json:"handOver,omitempty"`
	// Recovery is what a `selfkube recover` run was asked and set aside.
	Recovery *Recovery `json:"recovery,omitempty"`

	path   string
	exists bool
}

// HandOver is what init remembers of its hand-over from the temporary control plane to
// the self-hosted one.
type HandOver struct {
	// Started is when the teardown of the temporary control plane began.
	Started time.Time `json:"started"`
	// TemporaryLeaders are the lease holders of the temporary scheduler and controller
	// manager at the teardown, by lease name: their successors must differ.
	TemporaryLeaders map[string]string `json:"temporaryLeaders,omitempty"`
	// Finished is set once the temporary control plane is gone.
	Finished bool `json:"finished,omitempty"`
}

// Recovery is what `selfkube recover` remembers of a run: a second run must ask the
// same to resume it.
type Recovery struct {
	// Mode is the kind of recovery (from-snapshot, force-new-cluster, control-plane).
	Mode string `json:"mode"`
	// Snapshot is the absolute path of the snapshot restored (from-snapshot).
	Snapshot string `json:"snapshot,omitempty"`
	// Started is when the run began: the time in the names of what it set aside.
	Started time.Time `json:"started"`
	// MovedAside lists the etcd data directories it moved or copied aside.
	MovedAside []string `json:"movedAside,omitempty"`
	// Activated lists the checkpoints it activated; Paused those it retired while etcd
	// restarts, to activate again once etcd serves.
	Activated []string `json:"activated,omitempty"`
	Paused    []string `json:"paused,omitempty"`
}

// IsCompleted reports whether a run of the whole workflow finished.
func (r *Record) IsCompleted() bool { return !r.Completed.IsZero() }

// HandedOver reports whether init's hand-over finished.
func (r *Record) HandedOver() bool { return r.HandOver != nil && r.HandOver.Finished }

// LoadRecord reads command's record; a missing file is an empty record that Exists says
// was never saved.
func LoadRecord(l Layout, command string) (*Record, error) {
	r := &Record{path: filepath.Join(l.StateDir(), command+".json")}
	data, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading selfkube's record of %s: %w", command, err)
	}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): run `selfkube reset` to start over", r.path, err)
	}
	r.exists = true
	return r, nil
}

// Exists reports whether the record was ever saved: the command wrote something here.
func (r *Record) Exists() bool { return r.exists }

// Save writes the record.
func (r *Record) Save() error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if _, err := WriteFile(r.path, data, 0o600); err != nil {
		return fmt.Errorf("saving selfkube's record %s: %w", r.path, err)
	}
	r.exists = true
	return nil
}

// Own records that the command wrote path, before it writes it.
func (r *Record) Own(path string) error {
	if r.exists && slices.Contains(r.Owned, path) {
		return nil
	}
	if !slices.Contains(r.Owned, path) {
		r.Owned = append(r.Owned, path)
	}
	return r.Save()
}

// Disown records that the command removed path, which it wrote.
func (r *Record) Disown(path string) error {
	if !slices.Contains(r.Owned, path) {
		return nil
	}
	r.Owned = slices.DeleteFunc(r.Owned, func(p string) bool { return p == path })
	return r.Save()
}

// Owns reports whether the command wrote path.
func (r *Record) Owns(path string) bool { return slices.Contains(r.Owned, path) }

// Finished records that phase finished. It is saved only once the command wrote something
// (Own): a run that failed before writing anything leaves no record.
func (r *Record) Finished(phase string) error {
	if slices.Contains(r.Done, phase) {
		return nil
	}
	r.Done = append(r.Done, phase)
	if !r.exists {
		return nil
	}
	return r.Save()
}

// Has reports whether phase finished in an earlier or this run.
func (r *Record) Has(phase string) bool { return slices.Contains(r.Done, phase) }
