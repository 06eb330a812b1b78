package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestEnsureWritesVerifiesAndReuses(t *testing.T) {
	src := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(src, []byte("first"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := Image{
		File:       "pause_3.10.2.tar",
		Tags:       []string{"registry.local/pause:3.10.2", "registry.local/pause:latest"},
		Contents:   withBase(Content{Dest: "/pause", Source: src}),
		Entrypoint: []string{"/pause"},
		Env:        []string{defaultPath},
	}
	out := t.TempDir()
	file := filepath.Join(out, img.File)

	for i, want := range []bool{true, false} {
		built, err := ensure(out, img)
		if err != nil {
			t.Fatalf("ensure #%d: %v", i+1, err)
		}
		if built != want {
			t.Errorf("ensure #%d built = %v, want %v", i+1, built, want)
		}
	}
	if err := verify(file, img, true); err != nil {
		t.Errorf("verify: %v", err)
	}

	if err := os.WriteFile(src, []byte("second"), 0o755); err != nil {
		t.Fatal(err)
	}
	if built, err := ensure(out, img); err != nil || !built {
		t.Errorf("ensure after the source changed = %v, %v; want a rebuild", built, err)
	}

	other := img
	other.Entrypoint = []string{"/missing"}
	if err := verify(file, other, false); err == nil || !strings.Contains(err.Error(), "entrypoint") {
		t.Errorf("verify with another entrypoint = %v, want an entrypoint mismatch", err)
	}
	other.Entrypoint = nil
	other.Cmd = []string{"sh"}
	if err := hasProgramFile(file, img.Tags[0], other); err == nil {
		t.Error("hasProgram found sh in an image without it")
	}
}

// hasProgramFile is hasProgram for the image tagged tag in the tarball file.
func hasProgramFile(file, tag string, img Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	image, err := tarball.ImageFromPath(file, &t)
	if err != nil {
		return err
	}
	return hasProgram(image, img)
}

func TestCheckStatic(t *testing.T) {
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkStatic([]Content{{Dest: "/script", Source: text}, {Dest: "/dir", Source: t.TempDir()}}); err != nil {
		t.Errorf("checkStatic of a script and a directory: %v", err)
	}
	dynamic := "/bin/true" // dynamically linked on Debian
	if err := checkStatic([]Content{{Dest: "/true", Source: dynamic}}); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("checkStatic(%s) = %v, want a dynamically linked error", dynamic, err)
	}
	static := filepath.Join(t.TempDir(), "pause")
	build := exec.Command("go", "build", "-o", static, "../pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static program: %v\n%s", err, out)
	}
	if err := checkStatic([]Content{{Dest: "/pause", Source: static}}); err != nil {
		t.Errorf("checkStatic(static pause): %v", err)
	}
}
