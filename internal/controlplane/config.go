package controlplane

import (
	"fmt"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	"maps"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/selfkube/selfkube/internal/config"
)

var versionRE = regexp.MustCompile(versionPattern)

// SpecFrom is the spec of a cluster made with cluster's configuration: what init creates
// the ControlPlane with, so that the operator's first look changes nothing.
func SpecFrom(cluster *config.ClusterConfiguration) Spec {
	component := func(image string, c config.Component) Component {
		return Component{Image: image, Component: copyComponent(c)}
	}
	s := Spec{
		KubernetesVersion: cluster.KubernetesVersion,
		ImageRepository:   cluster.ImageRepository,
		APIServer:         component(cluster.Images.APIServer, cluster.APIServer.Component),
		ControllerManager: component(cluster.Images.ControllerManager, cluster.ControllerManager),
		Scheduler:         component(cluster.Images.Scheduler, cluster.Scheduler),
		KubeProxy:         Addon{Image: cluster.Images.Proxy},
		CoreDNS:           Addon{Image: cluster.Images.CoreDNS},
	}
	if cluster.Etcd.Local != nil {
		s.Etcd.ExtraArgs = maps.Clone(cluster.Etcd.Local.ExtraArgs)
		s.Etcd.Version = cluster.EtcdVersion
	}
	return s
}

// Configure returns cluster with the spec's fields in place of its own: the
// configuration the manifests of the control plane are rendered from. cluster is not
// changed.
func (s *Spec) Configure(cluster config.ClusterConfiguration) config.ClusterConfiguration {
	out := cluster
	out.KubernetesVersion = s.KubernetesVersion
	if s.ImageRepository != "" {
		out.ImageRepository = s.ImageRepository
	}
	out.Images.APIServer = s.APIServer.Image
	out.Images.ControllerManager = s.ControllerManager.Image
	out.Images.Scheduler = s.Scheduler.Image
	out.Images.Proxy = s.KubeProxy.Image
	out.Images.CoreDNS = s.CoreDNS.Image
	out.APIServer.Component = copyComponent(s.APIServer.Component)
	out.ControllerManager = copyComponent(s.ControllerManager.Component)
	out.Scheduler = copyComponent(s.Scheduler.Component)
	if cluster.Etcd.Local != nil {
		local := *cluster.Etcd.Local
		local.ExtraArgs = maps.Clone(s.Etcd.ExtraArgs)
		out.Etcd.Local = &local
		if s.Etcd.Version != "" {
			out.EtcdVersion = s.Etcd.Version
		}
	}
	return out
}

func copyComponent(c config.Component) config.Component {
	return config.Component{
		ExtraArgs:    maps.Clone(c.ExtraArgs),
		FeatureGates: maps.Clone(c.FeatureGates),
		Resources:    config.Resources{Requests: maps.Clone(c.Resources.Requests), Limits: maps.Clone(c.Resources.Limits)},
	}
}

// Validate checks a spec beyond what the CRD's schema can say, with the same rules as
// the configuration file.
func (s *Spec) Validate() field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	if !versionRE.MatchString(s.KubernetesVersion) {
		errs = append(errs, field.Invalid(p.Child("kubernetesVersion"), s.KubernetesVersion, "must be a Kubernetes release such as v1.36.3"))
	}
	if strings.ContainsAny(s.ImageRepository, " @\t") || strings.HasSuffix(s.ImageRepository, "/") {
		errs = append(errs, field.Invalid(p.Child("imageRepository"), s.ImageRepository,
			"must be a registry host with an optional path, such as registry.k8s.io"))
	}
	for _, c := range []struct {
		name string
		c    *Component
	}{{"apiServer", &s.APIServer}, {"controllerManager", &s.ControllerManager}, {"scheduler", &s.Scheduler}} {
		if strings.ContainsAny(c.c.Image, " \t") {
			errs = append(errs, field.Invalid(p.Child(c.name, "image"), c.c.Image, "must be an image reference"))
		}
		errs = append(errs, config.ValidateComponent(&c.c.Component, p.Child(c.name))...)
	}
	for _, a := range []struct {
		name string
		a    *Addon
	}{{"kubeProxy", &s.KubeProxy}, {"coreDNS", &s.CoreDNS}} {
		if strings.ContainsAny(a.a.Image, " \t") {
			errs = append(errs, field.Invalid(p.Child(a.name, "image"), a.a.Image, "must be an image reference"))
		}
	}
	errs = append(errs, config.ValidateEtcdExtraArgs(s.Etcd.ExtraArgs, p.Child("etcd", "extraArgs"))...)
	if s.Etcd.Version != "" {
		errs = append(errs, config.ValidateEtcdVersion(s.Etcd.Version, p.Child("etcd", "version"))...)
	}
	return errs
}

// EtcdVersionChange says why etcd may not go from release from to release to; "" when
// it may (or either is unknown). selfkube changes etcd's patch release only: a new
// minor changes etcd's cluster version once every member runs it, after which the old
// release no longer starts, so a rollback could not go back.
func EtcdVersionChange(from, to string) string {
	if to == "" || from == "" || to == from {
		return ""
	}
	t, terr := utilversion.ParseSemantic(to)
	f, ferr := utilversion.ParseSemantic(from)
	if terr != nil || ferr != nil {
		return ""
	}
	if t.Major() != f.Major() || t.Minor() != f.Minor() {
		return fmt.Sprintf("spec.etcd.version: %s → %s changes etcd's minor version; selfkube changes etcd within a minor only "+
			"(once every member ran %s, a rollback to %s could not start): choose a v%d.%d.x release", from, to, to, from, f.Major(), f.Minor())
	}
	return ""
}
