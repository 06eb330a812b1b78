package network

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestDesiredConflistGolden(t *testing.T) {
	for _, tc := range []struct {
		name     string
		podCIDRs []string
	}{
		{"ipv4", []string{"10.244.1.0/24"}},
		{"ipv6", []string{"fd00:10:244:1::/64"}},
		{"dual-stack", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
		{"dual-stack-ipv6-first", []string{"fd00:10:244:1::/64", "10.244.1.0/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DesiredConflist(tc.podCIDRs)
			if err != nil {
				t.Fatalf("DesiredConflist(%v): %v", tc.podCIDRs, err)
			}
			if !json.Valid(got) {
				t.Fatalf("not JSON:\n%s", got)
			}
			again, _ := DesiredConflist(tc.podCIDRs)
			if string(again) != string(got) {
				t.Errorf("two calls gave different bytes")
			}
			golden := filepath.Join("testdata", "conflist-"+tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run go test ./internal/network -update): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("conflist differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// The properties the cluster relies on, checked on the decoded document rather than
// the golden bytes.
func TestDesiredConflistSemantics(t *testing.T) {
	got, err := DesiredConflist([]string{"10.244.1.0/24", "fd00::/64"})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CNIVersion != "1.0.0" || len(doc.Plugins) != 2 {
		t.Fatalf("cniVersion %q with %d plugins, want 1.0.0 with 2", doc.CNIVersion, len(doc.Plugins))
	}
	b := doc.Plugins[0]
	if b["type"] != "bridge" || b["bridge"] != "cni0" || b["isGateway"] != true || b["hairpinMode"] != true || b["ipMasq"] != false {
		t.Errorf("bridge plugin = %v", b)
	}
	ipam := b["ipam"].(map[string]any)
	if ipam["type"] != "host-local" {
		t.Errorf("ipam type %v", ipam["type"])
	}
	if s := mustJSON(t, ipam["ranges"]); s != `[[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00::/64"}]]` {
		t.Errorf("ranges %s", s)
	}
	if s := mustJSON(t, ipam["routes"]); s != `[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]` {
		t.Errorf("routes %s", s)
	}
	p := doc.Plugins[1]
	if p["type"] != "portmap" || mustJSON(t, p["capabilities"]) != `{"portMappings":true}` {
		t.Errorf("portmap plugin = %v", p)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDesiredConflistRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		podCIDRs []string
		wantErr  string
	}{
		{"none", nil, "no pod CIDR"},
		{"empty string", []string{""}, "pod CIDR"},
		{"not a CIDR", []string{"10.244.1.0"}, "pod CIDR"},
		{"host bits", []string{"10.244.1.5/24"}, "host bits"},
		{"two ipv4", []string{"10.244.1.0/24", "10.244.2.0/24"}, "one address family"},
		{"two ipv6", []string{"fd00::/64", "fd01::/64"}, "one address family"},
		{"three", []string{"10.244.1.0/24", "fd00::/64", "10.244.2.0/24"}, "expected one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DesiredConflist(tc.podCIDRs)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DesiredConflist(%q) error = %v, want one containing %q", tc.podCIDRs, err, tc.wantErr)
			}
		})
	}
}

func TestWriteFileIfChanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "10-selfkube.conflist")

	wrote, err := writeFileIfChanged(path, []byte("one"), 0o644)
	if err != nil || !wrote {
		t.Fatalf("first write: wrote=%v err=%v", wrote, err)
	}
	before, _ := os.Stat(path)

	wrote, err = writeFileIfChanged(path, []byte("one"), 0o644)
	if err != nil || wrote {
		t.Fatalf("same content: wrote=%v err=%v, want no write", wrote, err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Errorf("same content replaced the file")
	}

	wrote, err = writeFileIfChanged(path, []byte("two"), 0o644)
	if err != nil || !wrote {
		t.Fatalf("changed content: wrote=%v err=%v", wrote, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Errorf("content %q, want two", b)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", info.Mode().Perm())
	}
	assertOnlyFiles(t, dir, "10-selfkube.conflist")

	if _, err := writeFileIfChanged(filepath.Join(dir, "missing", "x"), []byte("x"), 0o644); err == nil ||
		!strings.Contains(err.Error(), "check that the directory exists") {
		t.Errorf("write into a missing directory: %v", err)
	}
}

// assertOnlyFiles fails unless dir holds exactly names (no temporary files left over).
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(names, got); diff != "" {
		t.Errorf("files in %s (-want +got):\n%s", dir, diff)
	}
}
