package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
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
// Everything is root's and 0600 (directories 0700, Dir included even when the kubelet
// created it 0755): the files are the control plane's credentials.
//
// NAME is always a valid checkpoint name (see ValidName). The methods refuse any other
// name rather than join it into a path, and refuse a path that would not be an entry
// directly inside Dir or ManifestsDir. Entries on disk with other names are not
// checkpoints: Names does not list them, so nothing ever removes them.
type Store struct {
	Dir          string
	ManifestsDir string
}

const podFile = "pod.yaml"

// maxNameLen is the longest checkpoint name: a DNS label.
const maxNameLen = 63

// ValidName returns an error unless name can name a checkpoint: a DNS label (RFC 1123) of
// 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or a
// digit. A checkpoint name becomes a directory name, a static-pod file name and a metric
// label on every control-plane node, so nothing else is accepted: in particular no '/',
// no '.', no "..".
func ValidName(name string) error {
	if name == "" {
		return errors.New("invalid checkpoint name \"\": it is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("invalid checkpoint name %s: it is longer than %d characters", QuoteName(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(name)-1) {
			return fmt.Errorf("invalid checkpoint name %s: it must be a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit)", QuoteName(name))
		}
	}
	return nil
}

// QuoteName quotes a checkpoint name that may come from anywhere (any pod's annotation)
// for a message, cut short.
func QuoteName(name string) string {
	if len(name) > maxNameLen+1 {
		return strconv.Quote(name[:maxNameLen+1]) + "…"
	}
	return strconv.Quote(name)
}

// DirOf is the directory of checkpoint name (an error for an invalid name): the dir
// Sanitize makes the checkpoint's volumes point into.
func (s Store) DirOf(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return entry(s.Dir, name)
}

// activePath is where the kubelet finds checkpoint name while it is active.
func (s Store) activePath(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return entry(s.ManifestsDir, StaticPodName(name)+".yaml")
}

// entry joins name to dir, and refuses a result that is not an entry directly inside dir
// (a second line of defence behind ValidName).
func entry(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if name == "." || name == ".." || filepath.Base(p) != name || filepath.Dir(p) != filepath.Clean(dir) {
		return "", fmt.Errorf("%s is not an entry of %s", QuoteName(name), dir)
	}
	return p, nil
}

// ensureDir creates dir 0700, and makes it 0700 if it exists: MkdirAll leaves an existing
// directory as it is, and the kubelet creates the DaemonSet's hostPath 0755.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", dir, err)
	}
	return nil
}

// Names lists the checkpoints on disk, complete or not, and those active in the
// static-pod directory. Entries whose names are not valid checkpoint names are left out.
func (s Store) Names() ([]string, error) {
	seen := map[string]bool{}
	entries, err := os.ReadDir(s.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && ValidName(e.Name()) == nil {
			seen[e.Name()] = true
		}
	}
	active, err := os.ReadDir(s.ManifestsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing static pods: %w", err)
	}
	prefix := StaticPodName("")
	for _, e := range active {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ".yaml") {
			continue
		}
		if name := strings.TrimSuffix(strings.TrimPrefix(n, prefix), ".yaml"); ValidName(name) == nil {
			seen[name] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Present reports whether a complete checkpoint called name is on disk (never for an
// invalid name).
func (s Store) Present(name string) bool {
	dir, err := s.DirOf(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, podFile))
	return err == nil
}

// Active reports whether the checkpoint is in the kubelet's static-pod directory (never
// for an invalid name).
func (s Store) Active(name string) bool {
	p, err := s.activePath(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Write stores a checkpoint: its files first, the pod last, and deletes files an earlier
// version had that this one has not. It reports whether anything changed. File paths
// must stay inside the checkpoint's directory.
func (s Store) Write(name string, pod *corev1.Pod, files []File) (bool, error) {
	dir, err := s.DirOf(name)
	if err != nil {
		return false, fmt.Errorf("writing checkpoint: %w", err)
	}
	for _, f := range files {
		if !filepath.IsLocal(filepath.FromSlash(f.Path)) {
			return false, fmt.Errorf("writing checkpoint %s: file %s would leave its directory", name, QuoteName(f.Path))
		}
	}
	data, err := yaml.Marshal(pod)
	if err != nil {
		return false, fmt.Errorf("encoding checkpoint %s: %w", name, err)
	}
	for _, d := range []string{s.Dir, dir} {
		if err := ensureDir(d); err != nil {
			return false, fmt.Errorf("writing checkpoint %s: %w", name, err)
		}
	}
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
	dir, err := s.DirOf(name)
	if err != nil {
		return fmt.Errorf("activating checkpoint: %w", err)
	}
	active, err := s.activePath(name)
	if err != nil {
		return fmt.Errorf("activating checkpoint: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, podFile))
	if err != nil {
		return fmt.Errorf("activating checkpoint %s: %w", name, err)
	}
	if _, err := host.WriteFile(active, data, 0o600); err != nil {
		return fmt.Errorf("activating checkpoint %s: %w", name, err)
	}
	return nil
}

// Retire takes the checkpoint out of the static-pod directory; the kubelet stops it.
func (s Store) Retire(name string) error {
	active, err := s.activePath(name)
	if err != nil {
		return fmt.Errorf("retiring checkpoint: %w", err)
	}
	if err := os.Remove(active); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("retiring checkpoint %s: %w", name, err)
	}
	return nil
}

// Remove retires the checkpoint and deletes it.
func (s Store) Remove(name string) error {
	dir, err := s.DirOf(name)
	if err != nil {
		return fmt.Errorf("removing checkpoint: %w", err)
	}
	if err := s.Retire(name); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing checkpoint %s: %w", name, err)
	}
	return nil
}

// Lock serialises the processes that change the checkpoints of a node (the agent, and
// the boot-time activation before the kubelet starts). It blocks until it holds the lock.
// It creates Dir 0700, or makes it 0700.
func (s Store) Lock() (unlock func(), err error) {
	if err := ensureDir(s.Dir); err != nil {
		return nil, err
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
