package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/host"
)

// Store is the checkpoints of one node on disk:
//
//	Dir/NAME/pod.yaml             the static pod (written last: its presence means complete)
//	Dir/NAME/volumes/VOLUME/FILE  the Secret and ConfigMap files it mounts
//	ManifestsDir/checkpoint-NAME.yaml   present while the checkpoint is active
//
// Everything is root's and 0600 (directories 0700): the files are the control plane's
// credentials.
type Store struct {
	Dir          string
	ManifestsDir string
}

const podFile = "pod.yaml"

func (s Store) dir(name string) string { return filepath.Join(s.Dir, name) }

func (s Store) activePath(name string) string {
	return filepath.Join(s.ManifestsDir, StaticPodName(name)+".yaml")
}

// Names lists the checkpoints on disk, complete or not, and those active in the
// static-pod directory.
func (s Store) Names() ([]string, error) {
	seen := map[string]bool{}
	entries, err := os.ReadDir(s.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			seen[e.Name()] = true
		}
	}
	active, err := os.ReadDir(s.ManifestsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing static pods: %w", err)
	}
	prefix := StaticPodName("")
	for _, e := range active {
		if n := e.Name(); strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ".yaml") {
			seen[strings.TrimSuffix(strings.TrimPrefix(n, prefix), ".yaml")] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Present reports whether a complete checkpoint called name is on disk.
func (s Store) Present(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir(name), podFile))
	return err == nil
}

// Active reports whether the checkpoint is in the kubelet's static-pod directory.
func (s Store) Active(name string) bool {
	_, err := os.Stat(s.activePath(name))
	return err == nil
}

// Write stores a checkpoint: its files first, the pod last, and deletes files an earlier
// version had that this one has not. It reports whether anything changed.
func (s Store) Write(name string, pod *corev1.Pod, files []File) (bool, error) {
	data, err := yaml.Marshal(pod)
	if err != nil {
		return false, fmt.Errorf("encoding checkpoint %s: %w", name, err)
	}
	dir := s.dir(name)
	changed := false
	keep := map[string]bool{}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		keep[p] = true
		a, err := host.WriteFile(p, f.Data, 0o600)
		if err != nil {
			return false, fmt.Errorf("writing checkpoint %s: %w", name, err)
		}
		changed = changed || a == host.Written
	}
	vols := filepath.Join(dir, volumesDir)
	err = filepath.WalkDir(vols, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() || keep[p] {
			return err
		}
		changed = true
		return os.Remove(p)
	})
	if err != nil {
		return false, fmt.Errorf("pruning checkpoint %s: %w", name, err)
	}
	a, err := host.WriteFile(filepath.Join(dir, podFile), data, 0o600)
	if err != nil {
		return false, fmt.Errorf("writing checkpoint %s: %w", name, err)
	}
	return changed || a == host.Written, nil
}

// Activate puts the checkpoint into the kubelet's static-pod directory.
func (s Store) Activate(name string) error {
	data, err := os.ReadFile(filepath.Join(s.dir(name), podFile))
	if err != nil {
		return fmt.Errorf("activating checkpoint %s: %w", name, err)
	}
	if _, err := host.WriteFile(s.activePath(name), data, 0o600); err != nil {
		return fmt.Errorf("activating checkpoint %s: %w", name, err)
	}
	return nil
}

// Retire takes the checkpoint out of the static-pod directory; the kubelet stops it.
func (s Store) Retire(name string) error {
	if err := os.Remove(s.activePath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("retiring checkpoint %s: %w", name, err)
	}
	return nil
}

// Remove retires the checkpoint and deletes it.
func (s Store) Remove(name string) error {
	if err := s.Retire(name); err != nil {
		return err
	}
	if err := os.RemoveAll(s.dir(name)); err != nil {
		return fmt.Errorf("removing checkpoint %s: %w", name, err)
	}
	return nil
}

// Lock serialises the processes that change the checkpoints of a node (the agent, and
// the boot-time activation before the kubelet starts). It blocks until it holds the lock.
func (s Store) Lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.Dir, err)
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the checkpoint lock: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the checkpoints: %w", err)
	}
	return func() { f.Close() }, nil
}
