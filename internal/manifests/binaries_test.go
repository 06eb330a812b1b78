package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// componentBinary finds a pinned component binary the way the API test tier does
// ($SELFKUBE_CACHE/bin/<name>-<version>/…), or skips the test.
func componentBinary(t *testing.T, dir string, names ...string) string {
	t.Helper()
	cache := os.Getenv("SELFKUBE_CACHE")
	if cache == "" {
		cache = "/var/cache/selfkube-test"
	}
	for _, n := range names {
		p := filepath.Join(cache, "bin", dir, n)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("no %v in %s (run make components)", names, filepath.Join(cache, "bin", dir))
	return ""
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)

// knownFlags are the flags a binary's --help lists.
func knownFlags(t *testing.T, binary string) map[string]bool {
	t.Helper()
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Fatalf("%s --help: %v", binary, err)
	}
	known := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if len(known) < 10 {
		t.Fatalf("%s --help lists only %d flags:\n%s", binary, len(known), out)
	}
	return known
}

// TestFlagsExistInPinnedBinaries checks every flag rendered for a component against the
// pinned binary's --help: a flag it does not know kills the pod at start.
func TestFlagsExistInPinnedBinaries(t *testing.T) {
	kube := "kubernetes-" + envOr("KUBE_VERSION", "v1.36.3")
	binaries := map[string]string{
		nameAPIServer:         componentBinary(t, kube, nameAPIServer),
		nameControllerManager: componentBinary(t, kube, nameControllerManager),
		nameScheduler:         componentBinary(t, kube, nameScheduler),
		nameProxy:             componentBinary(t, kube, nameProxy),
		nameEtcd:              componentBinary(t, "etcd-"+envOr("ETCD_VERSION", "v3.6.6"), "etcd", "server"),
	}
	known := map[string]map[string]bool{}
	for name, bin := range binaries {
		known[name] = knownFlags(t, bin)
	}
	checked := 0
	for name, mk := range cases {
		for _, a := range render(t, mk(t)) {
			spec, ok := podSpec(a.Object)
			if !ok {
				continue
			}
			for _, c := range spec.Containers {
				flags, ok := known[c.Name]
				if !ok {
					continue
				}
				var args []string
				if len(c.Command) > 0 {
					args = c.Command[1:]
				}
				for _, arg := range append(args, c.Args...) {
					flag, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
					checked++
					if !flags[flag] {
						t.Errorf("%s/%s: %s does not know --%s", name, a.Path, c.Name, flag)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no flag was checked")
	}
}
