package operator

import (
	"strings"
	"testing"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
)

// etcd's version changes within a minor only: a new minor could not be rolled back.
func TestEtcdVersionChange(t *testing.T) {
	cp := func(spec, lkg string) *controlplane.ControlPlane {
		c := &controlplane.ControlPlane{Spec: controlplane.Spec{Etcd: controlplane.Etcd{Version: spec}}}
		if lkg != "" {
			c.Status.LastKnownGood = &controlplane.Revision{Spec: controlplane.Spec{Etcd: controlplane.Etcd{Version: lkg}}}
		}
		return c
	}
	published := config.ClusterConfiguration{EtcdVersion: "v3.6.6"}
	for _, tc := range []struct {
		name      string
		cp        *controlplane.ControlPlane
		wantBlock bool
	}{
		{"patch up", cp("v3.6.16", "v3.6.6"), false},
		{"patch down (a rollback)", cp("v3.6.6", "v3.6.16"), false},
		{"unchanged", cp("v3.6.6", "v3.6.6"), false},
		{"no version in the spec", cp("", "v3.6.6"), false},
		{"minor up", cp("v3.7.0", "v3.6.16"), true},
		{"minor down", cp("v3.5.21", "v3.6.6"), true},
		{"minor up from the published version, no last-known-good yet", cp("v3.7.0", ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why := etcdVersionChange(tc.cp, published)
			if (why != "") != tc.wantBlock {
				t.Errorf("etcdVersionChange = %q, want blocked %v", why, tc.wantBlock)
			}
			if tc.wantBlock && !strings.Contains(why, "within a minor") {
				t.Errorf("the refusal does not say why: %q", why)
			}
		})
	}
}
