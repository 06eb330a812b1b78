package upgrade

import (
	"testing"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
)

func TestRemovedFlagsCheck(t *testing.T) {
	args := func(apiServer, controllerManager, scheduler map[string]string) controlplane.Spec {
		return controlplane.Spec{
			APIServer:         controlplane.Component{Component: config.Component{ExtraArgs: apiServer}},
			ControllerManager: controlplane.Component{Component: config.Component{ExtraArgs: controllerManager}},
			Scheduler:         controlplane.Component{Component: config.Component{ExtraArgs: scheduler}},
		}
	}
	for name, tc := range map[string]struct {
		current, target string
		spec            controlplane.Spec
		want            Check
	}{
		"a flag the next minor removed": {"v1.32.4", "v1.33.0", args(map[string]string{"cloud-provider": "external", "v": "2"}, nil, nil),
			Check{Name: "removed flags", Result: Block, Message: "kube-apiserver has no --cloud-provider since v1.33 and would not start with it " +
				"(apiServer.extraArgs.cloud-provider): --unset apiServer.extraArgs.cloud-provider"}},
		"the same flag, a patch release": {"v1.32.4", "v1.32.9", args(map[string]string{"cloud-provider": "external"}, nil, nil),
			Check{Name: "removed flags", Result: Pass, Message: "no flag the target removes is set"}},
		"the same flag, a minor removed before": {"v1.33.0", "v1.34.1", args(map[string]string{"cloud-provider": "external"}, nil, nil),
			Check{Name: "removed flags", Result: Pass, Message: "no flag the target removes is set"}},
		"the same flag, down a minor": {"v1.33.0", "v1.32.4", args(map[string]string{"cloud-provider": "external"}, nil, nil),
			Check{Name: "removed flags", Result: Pass, Message: "no flag the target removes is set"}},
		"the controller manager's": {"v1.30.2", "v1.31.0", args(nil, map[string]string{"horizontal-pod-autoscaler-upscale-delay": "3m"}, nil),
			Check{Name: "removed flags", Result: Block, Message: "kube-controller-manager has no --horizontal-pod-autoscaler-upscale-delay since v1.31 " +
				"and would not start with it (controllerManager.extraArgs.horizontal-pod-autoscaler-upscale-delay): " +
				"--unset controllerManager.extraArgs.horizontal-pod-autoscaler-upscale-delay"}},
		"the scheduler's": {"v1.27.16", "v1.28.0", args(nil, nil, map[string]string{"lock-object-name": "sched"}),
			Check{Name: "removed flags", Result: Block, Message: "kube-scheduler has no --lock-object-name since v1.28 and would not start with it " +
				"(scheduler.extraArgs.lock-object-name): --unset scheduler.extraArgs.lock-object-name"}},
		"a flag of another component": {"v1.32.4", "v1.33.0", args(nil, map[string]string{"cloud-provider": "external"}, nil),
			Check{Name: "removed flags", Result: Pass, Message: "no flag the target removes is set"}},
		"every minor skipped to": {"v1.30.0", "v1.33.0",
			args(map[string]string{"cloud-config": "/etc/cloud.conf"}, map[string]string{"volume-host-cidr-denylist": "10.0.0.0/8"}, nil),
			Check{Name: "removed flags", Result: Block, Message: "kube-apiserver has no --cloud-config since v1.33 and would not start with it " +
				"(apiServer.extraArgs.cloud-config): --unset apiServer.extraArgs.cloud-config; " +
				"kube-controller-manager has no --volume-host-cidr-denylist since v1.31 and would not start with it " +
				"(controllerManager.extraArgs.volume-host-cidr-denylist): --unset controllerManager.extraArgs.volume-host-cidr-denylist"}},
		"no flags": {"v1.36.3", "v1.37.0", args(nil, nil, nil),
			Check{Name: "removed flags", Result: Pass, Message: "no flag the target removes is set"}},
		"not a version": {"v1.36.3", "latest", args(nil, nil, nil),
			Check{Name: "removed flags", Result: Warn, Message: `not checked: kubernetesVersion "latest" is not a version`}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := removedFlagsCheck(tc.current, tc.target, tc.spec); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
