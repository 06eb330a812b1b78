package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Record is what one selfkube command (join; init keeps its own state for now) did on this
// node, kept between runs in StateDir as <command>.json (0600, no secrets): the files it
// wrote, the phases that finished, and whether the whole run finished. A run that stopped
// half-way resumes from it; `selfkube reset` removes what it owns.
type Record struct {
	// Owned lists the files the command wrote, by path.
	Owned []string `json:"owned,omitempty"`
	// Done lists the phases that finished, in order.
	Done []string `json:"done,omitempty"`
	// Completed is set when every phase of the run finished.
	Completed bool `json:"completed,omitempty"`
	// NodeName and ControlPlane say what the run made this node.
	NodeName     string `json:"nodeName,omitempty"`
	ControlPlane bool   `json:"controlPlane,omitempty"`

	path   string
	exists bool
}

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
