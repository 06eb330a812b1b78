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
