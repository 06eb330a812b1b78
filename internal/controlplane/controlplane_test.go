package controlplane

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/config/configtest"
)

// The spec init creates must configure exactly the cluster it came from: the operator's
// first look then changes nothing.
func TestSpecFromConfiguresTheSameCluster(t *testing.T) {
	cfg := configtest.Config(t, func(c *config.Config) {
		c.Cluster.ImageRepository = "registry.local/k8s"
		c.Cluster.Images.APIServer = "registry.local/custom/kube-apiserver:v1.36.3-patched"
		c.Cluster.APIServer.ExtraArgs = map[string]string{"v": "2"}
		c.Cluster.ControllerManager.FeatureGates = map[string]bool{"A": true}
		c.Cluster.Scheduler.Resources = config.Resources{Requests: map[string]string{"cpu": "50m"}}
	})
	spec := SpecFrom(&cfg.Cluster)
	if diff := cmp.Diff(cfg.Cluster, spec.Configure(cfg.Cluster)); diff != "" {
		t.Errorf("Configure(SpecFrom(c)) differs from c (-c +configured):\n%s", diff)
	}
	// The spec is a copy: changing it does not reach the configuration.
	spec.APIServer.ExtraArgs["v"] = "9"
	if cfg.Cluster.APIServer.ExtraArgs["v"] != "2" {
		t.Errorf("the spec shares its maps with the configuration")
	}
}

func TestConfigureTakesTheSpecsFields(t *testing.T) {
	cfg := configtest.Config(t, nil)
	spec := SpecFrom(&cfg.Cluster)
	spec.KubernetesVersion = "v1.36.1"
	spec.Scheduler.Image = "registry.local/sched:x"
	spec.APIServer.ExtraArgs = map[string]string{"max-requests-inflight": "800"}
	got := spec.Configure(cfg.Cluster)
	if got.Image(config.ImageAPIServer) != cfg.Cluster.ImageRepository+"/kube-apiserver:v1.36.1" ||
		got.Image(config.ImageScheduler) != "registry.local/sched:x" ||
		got.APIServer.ExtraArgs["max-requests-inflight"] != "800" {
		t.Errorf("configured: %+v", got)
	}
	if got.Networking != cfg.Cluster.Networking || got.ControlPlaneEndpoint != cfg.Cluster.ControlPlaneEndpoint {
		t.Errorf("fields outside the spec changed")
	}
}

func TestValidate(t *testing.T) {
	cfg := configtest.Config(t, nil)
	good := SpecFrom(&cfg.Cluster)
	if errs := good.Validate(); len(errs) > 0 {
		t.Fatalf("init's spec is not valid: %v", errs)
	}
	for name, tc := range map[string]struct {
		change func(*Spec)
		want   string
	}{
		"version":          {func(s *Spec) { s.KubernetesVersion = "latest" }, "spec.kubernetesVersion"},
		"repository":       {func(s *Spec) { s.ImageRepository = "registry.local/" }, "spec.imageRepository"},
		"image":            {func(s *Spec) { s.APIServer.Image = "a b" }, "spec.apiServer.image"},
		"flag with dashes": {func(s *Spec) { s.Scheduler.ExtraArgs = map[string]string{"--v": "1"} }, "spec.scheduler.extraArgs[--v]"},
		"gates twice": {func(s *Spec) {
			s.ControllerManager.ExtraArgs = map[string]string{"feature-gates": "A=true"}
			s.ControllerManager.FeatureGates = map[string]bool{"B": true}
		}, "spec.controllerManager.extraArgs[feature-gates]"},
		"not a quantity":  {func(s *Spec) { s.APIServer.Resources.Limits = map[string]string{"memory": "lots"} }, "spec.apiServer.resources.limits[memory]"},
		"gate of no name": {func(s *Spec) { s.APIServer.FeatureGates = map[string]bool{"A=B": true} }, "spec.apiServer.featureGates[A=B]"},
	} {
		s := SpecFrom(&cfg.Cluster)
		tc.change(&s)
		errs := s.Validate()
		if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), tc.want) {
			t.Errorf("%s: %v, want an error at %s", name, errs, tc.want)
		}
	}
}
