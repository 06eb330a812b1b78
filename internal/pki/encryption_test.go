package pki

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfkube/selfkube/internal/config/configtest"
)

func TestEncryptionConfigGeneratedOnceAndKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	res, err := EnsureEncryptionConfig(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, EncryptionConfigFile)
	if res.Action != Generated || res.Path != path {
		t.Errorf("first run: %v, want generated %s", res, path)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != KeyMode {
		t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), KeyMode)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != DirMode {
		t.Errorf("%s has mode %v, want %v", dir, st.Mode().Perm(), DirMode)
	}

	c, err := ParseEncryptionConfig(first)
	if err != nil {
		t.Fatalf("the generated configuration does not parse: %v\n%s", err, first)
	}
	if len(c.Resources) != 1 || strings.Join(c.Resources[0].Resources, ",") != "secrets" {
		t.Fatalf("resources = %+v, want secrets only", c.Resources)
	}
	providers := c.Resources[0].Providers
	if len(providers) != 2 || providers[0].Secretbox == nil || providers[1].Identity == nil || providers[1].Secretbox != nil {
		t.Fatalf("providers = %+v, want secretbox, then identity last", providers)
	}
	keys := providers[0].Secretbox.Keys
	if len(keys) != 1 || keys[0].Name == "" {
		t.Fatalf("secretbox keys = %+v, want one named key", keys)
	}
	key, err := base64.StdEncoding.DecodeString(keys[0].Secret)
	if err != nil || len(key) != 32 {
		t.Errorf("key %q: %d bytes (%v), want 32 bytes of base64", keys[0].Secret, len(key), err)
	}
	if !strings.Contains(string(first), "identity: {}") {
		t.Errorf("identity provider is not written as identity: {}:\n%s", first)
	}

	// A second run, also after the mode was loosened, keeps the key and tightens the mode.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = EnsureEncryptionConfig(dir, Options{})
	if err != nil || res.Action != Existing {
		t.Fatalf("second run: %v %v, want using existing", res, err)
	}
	again, _ := os.ReadFile(path)
	if !bytes.Equal(first, again) {
		t.Errorf("a second run changed the key:\n%s\n%s", first, again)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != KeyMode {
		t.Errorf("second run left mode %v, want %v", st.Mode().Perm(), KeyMode)
	}

	// Two generations never share a key.
	other, err := NewEncryptionConfig()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, other) {
		t.Error("two generated configurations are identical")
	}
}

func TestEncryptionConfigDryRunWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	res, err := EnsureEncryptionConfig(dir, Options{DryRun: true})
	if err != nil || res.Action != Generated {
		t.Fatalf("dry run: %v %v", res, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dry run created %s (%v)", dir, err)
	}
}

func TestEncryptionConfigNotReplaced(t *testing.T) {
	for name, content := range map[string]string{
		"not yaml":     "{{",
		"other kind":   "apiVersion: v1\nkind: ConfigMap\n",
		"not secrets":  "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [configmaps]\n  providers: [{identity: {}}]\n",
		"no providers": "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, EncryptionConfigFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := EnsureEncryptionConfig(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "restore it") {
				t.Errorf("error %v, want one naming %s and what to do", err, path)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Errorf("the file was replaced: %q", b)
			}
		})
	}
	// A rotated configuration (two keys, another provider before identity) is kept.
	rotated := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n" +
		"  providers:\n  - aescbc: {keys: [{name: key2, secret: c2VjcmV0IGlzIHNlY3VyZQ==}]}\n" +
		"  - secretbox: {keys: [{name: key1, secret: YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=}]}\n  - identity: {}\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, EncryptionConfigFile), []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := EnsureEncryptionConfig(dir, Options{}); err != nil || res.Action != Existing {
		t.Errorf("a rotated configuration: %v %v, want it kept", res, err)
	}
}

func TestEnsureMakesKeyDirectoriesPrivate(t *testing.T) {
	dir := t.TempDir()
	// Directories made before, with the usual 0755.
	for _, d := range []string{dir, filepath.Join(dir, "etcd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := configtest.Config(t, nil)
	for run := 0; run < 2; run++ { // generating, then reusing everything
		if _, err := Ensure(dir, cfg, clock(testNow)); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{dir, filepath.Join(dir, "etcd")} {
			if st, _ := os.Stat(d); st.Mode().Perm() != DirMode {
				t.Errorf("run %d: %s has mode %v, want %v", run, d, st.Mode().Perm(), DirMode)
			}
		}
		if err := os.Chmod(filepath.Join(dir, "etcd"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
