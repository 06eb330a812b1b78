package main

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type tarEntry struct {
	Type byte
	Mode int64
	Link string
	Body string
}

func readTar(t *testing.T, b []byte) (map[string]tarEntry, []string) {
	t.Helper()
	got := map[string]tarEntry{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got, order
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %v, want root and the epoch", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		got[hdr.Name] = tarEntry{Type: hdr.Typeflag, Mode: hdr.Mode, Link: hdr.Linkname, Body: string(body)}
		order = append(order, hdr.Name)
	}
}

func TestWriteLayer(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/sbin/xtables-nft-multi"), []byte("multi"), 0o755))
	must(os.Symlink("xtables-nft-multi", filepath.Join(root, "usr/sbin/iptables")))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	bin := filepath.Join(t.TempDir(), "kube-proxy")
	must(os.WriteFile(bin, []byte("proxy"), 0o700))

	contents := []Content{
		{Dest: "/", Source: root},
		{Dest: "/usr/local/bin/kube-proxy", Source: bin},
		{Dest: "/bin/sh", Link: "/bin/busybox"},
		{Dest: "/tmp", Mode: 0o777 | fs.ModeSticky},
	}
	var buf bytes.Buffer
	if err := writeLayer(&buf, contents); err != nil {
		t.Fatalf("writeLayer: %v", err)
	}
	got, order := readTar(t, buf.Bytes())
	want := map[string]tarEntry{
		"bin/":                       {Type: tar.TypeDir, Mode: 0o755},
		"bin/sh":                     {Type: tar.TypeSymlink, Mode: 0o777, Link: "/bin/busybox"},
		"tmp/":                       {Type: tar.TypeDir, Mode: 0o1777},
		"usr/":                       {Type: tar.TypeDir, Mode: 0o755},
		"usr/local/":                 {Type: tar.TypeDir, Mode: 0o755},
		"usr/local/bin/":             {Type: tar.TypeDir, Mode: 0o755},
		"usr/local/bin/kube-proxy":   {Type: tar.TypeReg, Mode: 0o700, Body: "proxy"},
		"usr/sbin/":                  {Type: tar.TypeDir, Mode: 0o755},
		"usr/sbin/iptables":          {Type: tar.TypeSymlink, Mode: 0o777, Link: "xtables-nft-multi"},
		"usr/sbin/xtables-nft-multi": {Type: tar.TypeReg, Mode: 0o755, Body: "multi"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
	seen := map[string]bool{}
	for _, name := range order {
		if dir := filepath.Dir(filepath.Clean(name)); dir != "." && !seen[dir+"/"] {
			t.Errorf("%s comes before its directory %s/", name, dir)
		}
		seen[name] = true
	}

	var again bytes.Buffer
	if err := writeLayer(&again, contents); err != nil {
		t.Fatalf("writeLayer again: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two layers from the same inputs differ")
	}
}

func TestWriteLayerErrors(t *testing.T) {
	for name, c := range map[string]Content{
		"relative destination": {Dest: "usr/bin/x", Link: "y"},
		"missing source":       {Dest: "/x", Source: filepath.Join(t.TempDir(), "missing")},
	} {
		t.Run(name, func(t *testing.T) {
			if err := writeLayer(io.Discard, []Content{c}); err == nil {
				t.Error("writeLayer succeeded, want an error")
			}
		})
	}
}
