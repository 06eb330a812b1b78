package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfkube/selfkube/internal/config"
)

// run executes selfkube in-process, with a fixed host.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{streams: Streams{In: strings.NewReader(""), Out: &out, Err: &errOut},
		host: func() config.Host { return config.Host{Hostname: "node1", DefaultAddress: "192.0.2.10"} }}
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestVersionJSON(t *testing.T) {
	out, _, err := run(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["kubernetesVersion"] != config.DefaultKubernetesVersion {
		t.Fatalf("version -o json = %s (%v)", out, err)
	}
	if _, _, err := run(t, "version", "-o", "yaml"); err == nil {
		t.Error("an unknown output format was accepted")
	}
}

func TestRenderEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: selfkube.io/v1alpha1\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: 192.0.2.10:6443\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	assets := filepath.Join(dir, "assets")
	out, stderr, err := run(t, "render", "--config", cfg, "--asset-dir", assets, "--dry-run")
	if err != nil || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if _, err := os.Stat(assets); !os.IsNotExist(err) {
		t.Fatal("--dry-run wrote the asset directory")
	}
	out, stderr, err = run(t, "render", "--config", cfg, "--asset-dir", assets)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "✓ certificates") || !strings.Contains(out, "generated        tls/ca.key") {
		t.Errorf("progress on stderr, results on stdout; got stdout:\n%s\nstderr:\n%s", out, stderr)
	}
	out, _, err = run(t, "render", "--config", cfg, "--asset-dir", assets)
	if err != nil || strings.Contains(out, "generated") {
		t.Errorf("a second render generated files:\n%s (%v)", out, err)
	}
}

func TestBadConfigNamesTheField(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: selfkube.io/v1alpha1\nkind: ClusterConfiguration\nnetworking: {podSubnt: 10.0.0.0/16}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"config", "validate", "--config", cfg}, {"render", "--config", cfg, "--asset-dir", t.TempDir()}} {
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), `unknown field "networking.podSubnt"`) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestInitPhasesComeFromTheWorkflow(t *testing.T) {
	out, _, err := run(t, "init", "phase", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"preflight", "certs", "handover", "teardown", "bootstrap-token"} {
		if !strings.Contains(out, p) {
			t.Errorf("init phase --help lacks %s:\n%s", p, out)
		}
	}
	if _, _, err := run(t, "init", "--skip-phases", "nonsense", "--config", "/nonexistent"); err == nil {
		t.Error("init accepted a missing config file")
	}
}

// upgrade plan refuses what it cannot do before it reads the cluster.
func TestUpgradePlanRefusesBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upgrade", "plan", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"upgrade", "plan", "--set", "apiServer.extraArgs.v"}, "want FIELD=VALUE"},
		{[]string{"upgrade", "plan", "--kubeconfig", filepath.Join(t.TempDir(), "none")}, "pass --kubeconfig"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
