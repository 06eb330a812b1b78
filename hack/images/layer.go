package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// epoch is the modification time of every entry, so equal inputs give byte-equal layers.
var epoch = time.Unix(0, 0).UTC()

// Content is one thing put into an image's filesystem.
type Content struct {
	// Dest is the absolute path inside the image.
	Dest string
	// Source is a host file or directory. A directory is copied recursively, symlinks kept
	// as symlinks. Empty Source with an empty Link makes a directory at Dest.
	Source string
	// Link, when set, makes Dest a symlink to Link.
	Link string
	// Mode overrides the permission bits of a created directory (default 0755).
	Mode fs.FileMode
}

// entry is one tar header plus where its bytes come from.
type entry struct {
	hdr    *tar.Header
	source string
}

// writeLayer writes an uncompressed tar of contents to w: parent directories first, every
// path once (later contents win), entries sorted, owner root, times zero.
func writeLayer(w io.Writer, contents []Content) error {
	entries := map[string]entry{}
	for _, c := range contents {
		if err := collect(entries, c); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)

	tw := tar.NewWriter(w)
	for _, name := range names {
		e := entries[name]
		if err := tw.WriteHeader(e.hdr); err != nil {
			return fmt.Errorf("writing tar header for %s: %w", name, err)
		}
		if e.source == "" {
			continue
		}
		if err := copyFile(tw, e.source); err != nil {
			return fmt.Errorf("writing %s into the layer: %w", e.source, err)
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// collect adds c (and the directories above it) to entries.
func collect(entries map[string]entry, c Content) error {
	if !path.IsAbs(c.Dest) {
		return fmt.Errorf("image path %q is not absolute", c.Dest)
	}
	dest := strings.TrimPrefix(path.Clean(c.Dest), "/")
	addParents(entries, dest)
	switch {
	case c.Link != "":
		entries[dest] = entry{hdr: header(dest, tar.TypeSymlink, 0o777, 0, c.Link)}
		return nil
	case c.Source == "":
		mode := c.Mode
		if mode == 0 {
			mode = 0o755
		}
		entries[dest+"/"] = entry{hdr: header(dest+"/", tar.TypeDir, mode, 0, "")}
		return nil
	}
	info, err := os.Lstat(c.Source)
	if err != nil {
		return fmt.Errorf("reading %s for image path %s: %w", c.Source, c.Dest, err)
	}
	if !info.IsDir() {
		return addPath(entries, dest, c.Source, info)
	}
	return filepath.WalkDir(c.Source, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(c.Source, p)
		if err != nil {
			return err
		}
		if rel == "." {
			if dest == "" { // the image root itself has no entry
				return nil
			}
			entries[dest+"/"] = entry{hdr: header(dest+"/", tar.TypeDir, 0o755, 0, "")}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return addPath(entries, path.Join(dest, filepath.ToSlash(rel)), p, info)
	})
}

// addPath adds one host file, directory or symlink at dest.
func addPath(entries map[string]entry, dest, source string, info fs.FileInfo) error {
	perm := info.Mode().Perm() | info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(source)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", source, err)
		}
		entries[dest] = entry{hdr: header(dest, tar.TypeSymlink, 0o777, 0, target)}
	case info.IsDir():
		entries[dest+"/"] = entry{hdr: header(dest+"/", tar.TypeDir, perm, 0, "")}
	case info.Mode().IsRegular():
		entries[dest] = entry{hdr: header(dest, tar.TypeReg, perm, info.Size(), ""), source: source}
	default:
		return fmt.Errorf("%s is neither a file, a directory nor a symlink (mode %v)", source, info.Mode())
	}
	return nil
}

// addParents adds the directories above dest that are not there yet.
func addParents(entries map[string]entry, dest string) {
	for dir := path.Dir(dest); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := entries[dir+"/"]; ok {
			continue
		}
		entries[dir+"/"] = entry{hdr: header(dir+"/", tar.TypeDir, 0o755, 0, "")}
	}
}

func header(name string, typ byte, perm fs.FileMode, size int64, link string) *tar.Header {
	mode := int64(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if perm&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if perm&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return &tar.Header{
		Name:     name,
		Typeflag: typ,
		Mode:     mode,
		Size:     size,
		Linkname: link,
		ModTime:  epoch,
		Uname:    "root",
		Gname:    "root",
		Format:   tar.FormatPAX,
	}
}
