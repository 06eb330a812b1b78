package network

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallCNI(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "opt", "cni", "bin")
	plugins := map[string]string{"bridge": "bridge-v1", "host-local": "hl-v1", "loopback": "lo-v1", "portmap": "pm-v1"}
	for name, content := range plugins {
		if err := os.WriteFile(filepath.Join(from, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(from, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	opts := InstallOptions{From: from, To: to}

	if err := InstallCNI(opts, log); err != nil {
		t.Fatalf("first install: %v", err)
	}
	for name, content := range plugins {
		path := filepath.Join(to, name)
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Errorf("%s: %q, %v; want %q", name, b, err, content)
		}
		if info, _ := os.Stat(path); info.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", name, info.Mode().Perm())
		}
	}
	assertOnlyFiles(t, to, "bridge", "host-local", "loopback", "portmap")

	// Second run: identical files stay the very same files.
	before := statAll(t, to)
	if err := InstallCNI(opts, log); err != nil {
		t.Fatalf("second install: %v", err)
	}
	for name, info := range statAll(t, to) {
		if !os.SameFile(before[name], info) {
			t.Errorf("%s was rewritten though identical", name)
		}
	}

	// A changed plugin, a host file that lost its execute bit, and a file only the host
	// has: the first two are replaced, the third is left alone.
	if err := os.WriteFile(filepath.Join(from, "bridge"), []byte("bridge-v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(to, "portmap"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, "flannel"), []byte("theirs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := InstallCNI(opts, log); err != nil {
		t.Fatalf("third install: %v", err)
	}
	after := statAll(t, to)
	if b, _ := os.ReadFile(filepath.Join(to, "bridge")); string(b) != "bridge-v2" {
		t.Errorf("bridge = %q, want bridge-v2", b)
	}
	if after["portmap"].Mode().Perm() != 0o755 {
		t.Errorf("portmap mode %v, want 0755", after["portmap"].Mode().Perm())
	}
	if !os.SameFile(before["loopback"], after["loopback"]) {
		t.Errorf("unchanged loopback was rewritten")
	}
	if b, _ := os.ReadFile(filepath.Join(to, "flannel")); string(b) != "theirs" {
		t.Errorf("host-only file changed: %q", b)
	}
	assertOnlyFiles(t, to, "bridge", "flannel", "host-local", "loopback", "portmap")
}

func TestInstallCNIErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if err := InstallCNI(InstallOptions{From: filepath.Join(t.TempDir(), "none"), To: t.TempDir()}, log); err == nil ||
		!strings.Contains(err.Error(), "check that the image carries them") {
		t.Errorf("missing source: %v", err)
	}
	if err := InstallCNI(InstallOptions{From: t.TempDir(), To: t.TempDir()}, log); err == nil ||
		!strings.Contains(err.Error(), "no CNI plugins") {
		t.Errorf("empty source: %v", err)
	}
}

func statAll(t *testing.T, dir string) map[string]os.FileInfo {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]os.FileInfo{}
	for _, e := range entries {
		info, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info
	}
	return out
}
