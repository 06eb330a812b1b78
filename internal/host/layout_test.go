package host

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret", "key")
	if a, err := WriteFile(p, []byte("one"), 0o600); err != nil || a != Written {
		t.Fatalf("first write: %v %v", a, err)
	}
	if a, err := WriteFile(p, []byte("one"), 0o600); err != nil || a != Unchanged {
		t.Fatalf("identical write: %v %v", a, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err := WriteFile(p, []byte("two"), 0o600); err != nil || a != Written {
		t.Fatalf("changed write: %v %v", a, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(filepath.Dir(p))
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("directory of a private file has mode %v, want 0700", dst.Mode().Perm())
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "secret", ".*"))
	if len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestWriteFileDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("same"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	// Identical content behind the link: the link is replaced, the target keeps its mode.
	if a, err := WriteFile(link, []byte("same"), 0o600); err != nil || a != Written {
		t.Fatalf("write over a symlink: %v %v", a, err)
	}
	st, err := os.Lstat(link)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Errorf("%s after the write: %v %v, want a regular 0600 file", link, st.Mode(), err)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o644 {
		t.Errorf("the link's target was chmodded to %v", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(target); string(b) != "same" {
		t.Errorf("the link's target was written: %q", b)
	}
}

func TestEnsurePrivateDir(t *testing.T) {
	root := t.TempDir()
	existing := filepath.Join(root, "var", "lib", "etcd")
	if err := os.MkdirAll(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	fresh := filepath.Join(root, "var", "log", "kubernetes", "audit")
	for _, p := range []string{existing, fresh, existing} {
		if err := EnsurePrivateDir(p); err != nil {
			t.Fatalf("EnsurePrivateDir(%s): %v", p, err)
		}
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a 0700 directory", p, st.Mode(), err)
		}
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePrivateDir(file); err == nil {
		t.Errorf("EnsurePrivateDir(%s) on a regular file succeeded", file)
	}
}
