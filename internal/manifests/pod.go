package manifests

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/node"
)

// httpsProbe probes a control-plane component on the node's loopback address. Components
// run on the host network and declare no ports, so the port is a number.
func httpsProbe(host string, port int, path string, period, failures int32) *corev1.Probe {
	return probe(host, port, path, corev1.URISchemeHTTPS, period, failures)
}

func probe(host string, port int, path string, scheme corev1.URIScheme, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Host:   host,
			Path:   path,
			Port:   intstr.FromInt32(int32(port)),
			Scheme: scheme,
		}},
		InitialDelaySeconds: 0,
		TimeoutSeconds:      15,
		PeriodSeconds:       period,
		FailureThreshold:    failures,
	}
}

// Probe settings shared by the control-plane components: the startup probe allows four
// minutes for a cold start but checks every second (readiness is not probed before it
// succeeds, so a coarse period would delay every hand-over by up to that period),
// liveness restarts after 80 s of failures, and readiness reacts within seconds so a
// rolling hand-over moves on promptly.
const (
	startupPeriod     = 1
	startupFailures   = 240
	livenessPeriod    = 10
	livenessFailures  = 8
	readinessPeriod   = 1
	readinessFailures = 3
	readinessTimeout  = 5
)

// componentProbes sets the liveness, readiness and startup probes of c.
func componentProbes(c *corev1.Container, host string, port int, live, ready string) {
	c.LivenessProbe = httpsProbe(host, port, live, livenessPeriod, livenessFailures)
	c.ReadinessProbe = httpsProbe(host, port, ready, readinessPeriod, readinessFailures)
	c.ReadinessProbe.TimeoutSeconds = readinessTimeout
	c.StartupProbe = httpsProbe(host, port, live, startupPeriod, startupFailures)
}

// requests asks for cpuMilli thousandths of a core and, when memMiB > 0, memory.
func requests(cpuMilli, memMiB int64) corev1.ResourceRequirements {
	r := corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(cpuMilli, resource.DecimalSI)}
	if memMiB > 0 {
		r[corev1.ResourceMemory] = *resource.NewQuantity(memMiB<<20, resource.BinarySI)
	}
	return corev1.ResourceRequirements{Requests: r}
}

// withResources overrides the requests and limits of r, name by name, with those of c
// (validated quantities; one that does not parse is left out).
func withResources(r corev1.ResourceRequirements, c config.Resources) corev1.ResourceRequirements {
	set := func(list corev1.ResourceList, from map[string]string) corev1.ResourceList {
		for name, q := range from {
			v, err := resource.ParseQuantity(q)
			if err != nil {
				continue
			}
			if list == nil {
				list = corev1.ResourceList{}
			}
			list[corev1.ResourceName(name)] = v
		}
		return list
	}
	r.Requests = set(r.Requests, c.Requests)
	r.Limits = set(r.Limits, c.Limits)
	return r
}

// hostPathVolume mounts a host path at the same path in the container.
func hostPathVolume(name, path string, kind corev1.HostPathType, readOnly bool) (corev1.Volume, corev1.VolumeMount) {
	return corev1.Volume{
			Name:         name,
			VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: ptr.To(kind)}},
		}, corev1.VolumeMount{
			Name:      name,
			MountPath: path,
			ReadOnly:  readOnly,
		}
}

// SecretVolume is the volume of a control-plane pod that holds its Secret (mounted at
// SecretsMountDir); a checkpoint keeps its files in volumes/SecretVolume.
const SecretVolume = "secrets"

// secretVolume projects the Secret of a self-hosted component into SecretsMountDir,
// readable by the owner only.
func secretVolume(secret string) (corev1.Volume, corev1.VolumeMount) {
	return corev1.Volume{
			Name: SecretVolume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{
					Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: secret}},
				}},
				DefaultMode: ptr.To[int32](0o600),
			}},
		}, corev1.VolumeMount{
			Name:      SecretVolume,
			MountPath: SecretsMountDir,
			ReadOnly:  true,
		}
}

// controlPlaneTolerations let a control-plane workload run on a control-plane node in
// every state the control plane itself must come up in: tainted for the role, not yet
// ready, without a pod network, not yet initialised by a cloud provider, or briefly
// unreachable. The workloads must never be evicted for the node's conditions: they are
// what lifts those conditions.
func controlPlaneTolerations() []corev1.Toleration {
	return []corev1.Toleration{
		{Key: node.TaintControlPlane, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/network-unavailable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.cloudprovider.kubernetes.io/uninitialized", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
}

func runtimeDefaultSeccomp() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
}

// fieldEnv is the environment variable name set from the pod's field path (the downward
// API), such as spec.nodeName or status.hostIP.
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}
