package upgrade

import (
	"fmt"
	"slices"
	"strings"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/selfkube/selfkube/internal/controlplane"
)

// flagRemoval is the flags of one component that a Kubernetes minor version removed:
// the component's binary of that minor version and later does not start with them.
type flagRemoval struct {
	// Minor is the Kubernetes 1.x version that removed the flags: 33 for v1.33.
	Minor     uint
	Component string
	Flags     []string
}

// removedFlags are the flags of kube-apiserver, kube-controller-manager and
// kube-scheduler that a minor version removed, oldest first. Only removals read in the
// Kubernetes source are listed: for each pair of consecutive minor versions (1.26.0,
// 1.27.0, 1.28.0, 1.29.0, 1.30.0, 1.31.0, 1.32.13, 1.33.9, 1.34.4, 1.35.4, 1.36.3) the flag
// names registered on a pflag.FlagSet in the options of each component (cmd/<component>/app,
// pkg/controlplane/apiserver/options, pkg/kubeapiserver/options, and the staging modules
// k8s.io/apiserver pkg/server/options, k8s.io/controller-manager, k8s.io/cloud-provider and
// k8s.io/component-base of the same release) were listed and compared; each flag below is
// registered by that component's Flags/AddFlags in the older release (most were marked
// deprecated there) and by none of its options in the newer release. The insecure-serving
// flags that left k8s.io/apiserver in 1.31 are not listed: no component registered them
// any more. 1.34, 1.35 and 1.36 removed none of these components' flags.
var removedFlags = []flagRemoval{
	// k8s.io/apiserver pkg/server/options/server_run_options.go, AddUniversalFlags (which
	// of the three only kube-apiserver registers): "This flag will be removed in v1.27".
	{Minor: 27, Component: "kube-apiserver", Flags: []string{"master-service-namespace"}},
	// cmd/kube-controller-manager/app/options/nodelifecyclecontroller.go: "deprecated and
	// it will be removed in 1.27".
	{Minor: 27, Component: "kube-controller-manager", Flags: []string{"enable-taint-manager", "pod-eviction-timeout"}},
	// cmd/kube-scheduler/app/options/deprecated.go: "Will be removed in favor of
	// leader-elect-resource-namespace" (and -name).
	{Minor: 28, Component: "kube-scheduler", Flags: []string{"lock-object-name", "lock-object-namespace"}},
	// cmd/kube-controller-manager/app/options/hpacontroller.go and
	// persistentvolumebindercontroller.go: "currently no-op and will be deleted".
	{Minor: 31, Component: "kube-controller-manager", Flags: []string{
		"horizontal-pod-autoscaler-downscale-delay", "horizontal-pod-autoscaler-upscale-delay",
		"volume-host-allow-local-loopback", "volume-host-cidr-denylist"}},
	// pkg/kubeapiserver/options/cloudprovider.go, deleted in 1.33: "will be removed in a
	// future version".
	{Minor: 33, Component: "kube-apiserver", Flags: []string{"cloud-config", "cloud-provider"}},
}

// removedFlagsCheck blocks a change of the control plane's version from current to
// target when target's spec sets a flag that a minor version after current's, up to
// target's, removed: the component would not start.
func removedFlagsCheck(current, target string, spec controlplane.Spec) Check {
	c := Check{Name: "removed flags", Result: Pass, Message: "no flag the target removes is set"}
	from, errFrom := utilversion.ParseGeneric(current)
	to, errTo := utilversion.ParseGeneric(target)
	switch {
	case errTo != nil:
		c.Result, c.Message = Warn, fmt.Sprintf("not checked: kubernetesVersion %q is not a version", target)
		return c
	case errFrom != nil:
		c.Result, c.Message = Warn, fmt.Sprintf("not checked: the running kubernetesVersion %q is not a version", current)
		return c
	case from.Major() != to.Major() || to.Minor() <= from.Minor():
		return c
	}
	args := map[string]map[string]string{
		"kube-apiserver":          spec.APIServer.ExtraArgs,
		"kube-controller-manager": spec.ControllerManager.ExtraArgs,
		"kube-scheduler":          spec.Scheduler.ExtraArgs,
	}
	var blocks []string
	for _, r := range removedFlags {
		if to.Major() != 1 || r.Minor <= from.Minor() || r.Minor > to.Minor() {
			continue
		}
		for _, flag := range r.Flags {
			if _, set := args[r.Component][flag]; !set {
				continue
			}
			path := specField[r.Component] + ".extraArgs." + flag
			blocks = append(blocks, fmt.Sprintf("%s has no --%s since v1.%d and would not start with it (%s): --unset %s",
				r.Component, flag, r.Minor, path, path))
		}
	}
	if len(blocks) > 0 {
		slices.Sort(blocks)
		c.Result, c.Message = Block, strings.Join(blocks, "; ")
	}
	return c
}
