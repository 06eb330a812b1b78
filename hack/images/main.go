// Command images writes selfkube's local OCI image tarballs (no registry needed): one
// single-layer image per component kubeadm asks for, with exactly kubeadm's tags, plus busybox
// and selfkube itself. Each tarball is rebuilt only when its inputs changed, and every tarball
// is read back to check its tags and config. hack/build-images.sh prepares the inputs.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "images: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("images", flag.ContinueOnError)
	var (
		in      Inputs
		out     = fl.String("out", "", "directory the tarballs are written to")
		kubeadm = fl.String("kubeadm", "", "kubeadm binary that lists the images to build")
		version = fl.String("kubernetes-version", "", "Kubernetes version passed to kubeadm")
	)
	fl.StringVar(&in.Repository, "repository", "registry.local", "image repository")
	fl.StringVar(&in.KubeBin, "kube-bin", "", "directory with the Kubernetes binaries")
	fl.StringVar(&in.EtcdBin, "etcd-bin", "", "directory with etcd and etcdctl")
	fl.StringVar(&in.EtcdVersion, "etcd-version", "", "etcd release, an extra tag of the etcd image")
	fl.Func("extra-etcd", "another etcd release as VERSION=DIR (DIR holds its etcd and etcdctl); repeatable", func(v string) error {
		version, dir, ok := strings.Cut(v, "=")
		if !ok || !strings.HasPrefix(version, "v3.") || dir == "" {
			return fmt.Errorf("-extra-etcd %q: want VERSION=DIR, e.g. v3.6.16=/var/cache/selfkube-test/bin/etcd-v3.6.16", v)
		}
		in.ExtraEtcd = append(in.ExtraEtcd, EtcdRelease{Version: version, Bin: dir})
		return nil
	})
	fl.StringVar(&in.CoreDNSBin, "coredns-bin", "", "directory with coredns")
	fl.StringVar(&in.CoreDNSVersion, "coredns-version", "", "CoreDNS release, an extra tag of the coredns image")
	fl.StringVar(&in.CNIBin, "cni-bin", "", "directory with the CNI plugins")
	fl.StringVar(&in.Pause, "pause", "", "pause binary")
	fl.StringVar(&in.IPTablesRoot, "iptables-root", "", "root filesystem with iptables for kube-proxy")
	fl.StringVar(&in.BusyboxRoot, "busybox-root", "", "root filesystem with busybox")
	fl.StringVar(&in.Selfkube, "selfkube", "", "selfkube binary")
	if err := fl.Parse(args); err != nil {
		return err
	}
	for flagName, v := range map[string]string{"out": *out, "kubeadm": *kubeadm, "kubernetes-version": *version} {
		if v == "" {
			return fmt.Errorf("flag -%s is required", flagName)
		}
	}
	refs, err := kubeadmImages(*kubeadm, *version, in.Repository)
	if err != nil {
		return err
	}
	in.KubeadmImages = refs
	images, err := Catalog(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", *out, err)
	}
	for _, img := range images {
		start := time.Now()
		built, err := ensure(*out, img)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Tags[0], err)
		}
		file := filepath.Join(*out, img.File)
		if err := verify(file, img, built); err != nil {
			return fmt.Errorf("checking %s: %w", file, err)
		}
		verb := "reused"
		if built {
			verb = "built "
		}
		fmt.Fprintf(os.Stderr, "%s %-45s %s (%s)\n", verb, img.File, strings.Join(img.Tags, " "), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// kubeadmImages asks kubeadm which images a cluster of this version needs.
func kubeadmImages(kubeadm, version, repository string) ([]string, error) {
	cmd := exec.Command(kubeadm, "config", "images", "list", "--kubernetes-version", version, "--image-repository", repository)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running %s: %w: %s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	refs := strings.Fields(string(out))
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s listed no images", strings.Join(cmd.Args, " "))
	}
	return refs, nil
}

// ensure writes img's tarball into dir unless the one there was built from the same inputs.
// It reports whether it wrote one.
func ensure(dir string, img Image) (bool, error) {
	if err := checkStatic(img.Contents); err != nil {
		return false, err
	}
	key, err := inputKey(img)
	if err != nil {
		return false, err
	}
	file := filepath.Join(dir, img.File)
	keyFile := filepath.Join(dir, "."+img.File+".key")
	if old, err := os.ReadFile(keyFile); err == nil && string(old) == key {
		if _, err := os.Stat(file); err == nil {
			return false, nil
		}
	}
	if err := write(file, img); err != nil {
		return false, err
	}
	if err := os.WriteFile(keyFile, []byte(key), 0o644); err != nil {
		return false, fmt.Errorf("recording the inputs of %s: %w", file, err)
	}
	return true, nil
}

// inputKey hashes everything an image is made of: its definition and the bytes, modes and
// link targets of every source file.
func inputKey(img Image) (string, error) {
	h := sha256.New()
	def, err := json.Marshal(img)
	if err != nil {
		return "", fmt.Errorf("encoding the image definition: %w", err)
	}
	h.Write(def)
	for _, c := range img.Contents {
		if c.Source == "" {
			continue
		}
		err := filepath.WalkDir(c.Source, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%v\x00", p, info.Mode())
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "%s\x00", target)
			case info.Mode().IsRegular():
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				if _, err := io.Copy(h, f); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", c.Source, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// write builds img and writes it to file (through a temporary file, so a failed run leaves
// no half-written tarball behind).
func write(file string, img Image) error {
	layerFile, err := os.CreateTemp(filepath.Dir(file), ".layer-*.tar")
	if err != nil {
		return fmt.Errorf("creating a layer file: %w", err)
	}
	defer os.Remove(layerFile.Name())
	if err := writeLayer(layerFile, img.Contents); err != nil {
		layerFile.Close()
		return fmt.Errorf("writing the layer: %w", err)
	}
	if err := layerFile.Close(); err != nil {
		return fmt.Errorf("writing the layer: %w", err)
	}
	layer, err := tarball.LayerFromFile(layerFile.Name(), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return fmt.Errorf("reading the layer back: %w", err)
	}
	image, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("adding the layer: %w", err)
	}
	cfg, err := image.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = img.Entrypoint
	cfg.Config.Cmd = img.Cmd
	cfg.Config.Env = img.Env
	image, err = mutate.ConfigFile(image, cfg)
	if err != nil {
		return fmt.Errorf("setting the image config: %w", err)
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range img.Tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("parsing tag %q: %w", t, err)
		}
		refs[tag] = image
	}
	tmp := file + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("moving %s into place: %w", file, err)
	}
	return nil
}

// verify reads file back under every tag and checks what a container runtime relies on; deep
// also reads the layer to check that the entrypoint (or the command) is in it.
func verify(file string, img Image, deep bool) error {
	for _, t := range img.Tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("parsing tag %q: %w", t, err)
		}
		image, err := tarball.ImageFromPath(file, &tag)
		if err != nil {
			return fmt.Errorf("reading tag %s: %w", t, err)
		}
		cfg, err := image.ConfigFile()
		if err != nil {
			return fmt.Errorf("reading the config of %s: %w", t, err)
		}
		var errs []error
		if cfg.OS != "linux" || cfg.Architecture != "amd64" {
			errs = append(errs, fmt.Errorf("platform is %q/%q, want linux/amd64", cfg.OS, cfg.Architecture))
		}
		if !slices.Equal(cfg.Config.Entrypoint, img.Entrypoint) || !slices.Equal(cfg.Config.Cmd, img.Cmd) {
			errs = append(errs, fmt.Errorf("entrypoint %q cmd %q, want %q %q", cfg.Config.Entrypoint, cfg.Config.Cmd, img.Entrypoint, img.Cmd))
		}
		if layers, err := image.Layers(); err != nil || len(layers) != 1 {
			errs = append(errs, fmt.Errorf("want exactly one layer, got %d (%v)", len(layers), err))
		}
		if deep {
			if err := hasProgram(image, img); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("tag %s: %w: delete the tarball and run hack/build-images.sh again", t, err)
		}
	}
	return nil
}

// hasProgram checks that the image's layer holds the program its entrypoint (or, without
// one, its command) runs, resolving a relative command through /bin and /usr/local/bin.
func hasProgram(image v1.Image, img Image) error {
	argv := img.Entrypoint
	if len(argv) == 0 {
		argv = img.Cmd
	}
	if len(argv) == 0 {
		return errors.New("the image has neither an entrypoint nor a command")
	}
	want := map[string]bool{}
	if strings.HasPrefix(argv[0], "/") {
		want[strings.TrimPrefix(argv[0], "/")] = true
	} else {
		for _, dir := range []string{"bin", "usr/bin", "usr/local/bin"} {
			want[dir+"/"+argv[0]] = true
		}
	}
	rc := mutate.Extract(image)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%s is not in the image", argv[0])
		}
		if err != nil {
			return fmt.Errorf("reading the layer: %w", err)
		}
		if want[strings.TrimPrefix(hdr.Name, "/")] {
			return nil
		}
	}
}

// checkStatic fails for a program copied in on its own (not as part of a root filesystem) that
// needs a dynamic loader: such images carry no libc, and the container would fail with a
// puzzling "no such file or directory".
func checkStatic(contents []Content) error {
	for _, c := range contents {
		if c.Source == "" {
			continue
		}
		info, err := os.Stat(c.Source)
		if err != nil {
			return fmt.Errorf("reading %s: %w", c.Source, err)
		}
		if info.IsDir() {
			continue
		}
		elfFile, err := isELF(c.Source)
		if err != nil {
			return err
		}
		if !elfFile {
			continue
		}
		f, err := elf.Open(c.Source)
		if err != nil {
			return fmt.Errorf("reading %s: %w", c.Source, err)
		}
		dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if dynamic {
			return fmt.Errorf("%s is dynamically linked and the image has no libc: build it with CGO_ENABLED=0 (as `make build` does)", c.Source)
		}
	}
	return nil
}

// isELF reports whether the file starts with the ELF magic number.
func isELF(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	magic := make([]byte, len(elf.ELFMAG))
	if _, err := io.ReadFull(f, magic); err != nil {
		return false, nil // shorter than the magic: not an ELF file
	}
	return string(magic) == elf.ELFMAG, nil
}
