package manifests

import (
	"fmt"
	"path"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/config"
)

// Bootstrap builds the static pods of bootstrap-manifests/: etcd (permanent, unless etcd
// is external) and the temporary kube-apiserver, kube-controller-manager and
// kube-scheduler, which read their credentials from BootstrapSecretsDir and are removed
// once their self-hosted replacements run.
func Bootstrap(cfg *config.Config) ([]Asset, error) {
	if cfg.Cluster.Etcd.Local == nil && cfg.Cluster.Etcd.External == nil {
		return nil, fmt.Errorf("building bootstrap manifests: etcd is neither local nor external; default the configuration first")
	}
	var pods []*corev1.Pod
	if cfg.Cluster.Etcd.Local != nil {
		pods = append(pods, etcdPod(cfg))
	}
	pods = append(pods, bootstrapAPIServer(cfg), bootstrapControllerManager(cfg), bootstrapScheduler(cfg))
	assets := make([]Asset, 0, len(pods))
	for _, p := range pods {
		p.APIVersion, p.Kind = "v1", "Pod"
		assets = append(assets, Asset{Path: path.Join(bootstrapManifestsDir, p.Name+".yaml"), Object: p})
	}
	sort.Slice(assets, func(i, j int) bool { return assets[i].Path < assets[j].Path })
	return assets, nil
}

// staticPod is a control-plane static pod on the host network. Its labels are those
// kubeadm uses (component, tier) so existing tooling finds it; it carries no
// app.kubernetes.io/name, so no self-hosted controller's selector matches its mirror pod.
func staticPod(name string, temporary bool, c corev1.Container, volumes []corev1.Volume) *corev1.Pod {
	meta := objectMeta(name, Namespace, map[string]string{
		labelLegacyComponent: name,
		labelLegacyTier:      componentControlPlane,
	})
	if temporary {
		meta.Annotations = map[string]string{AnnotationTemporary: "true"}
	}
	return &corev1.Pod{
		ObjectMeta: meta,
		Spec: corev1.PodSpec{
			Containers:        []corev1.Container{c},
			HostNetwork:       true,
			PriorityClassName: priorityNodeCritical,
			SecurityContext:   runtimeDefaultSeccomp(),
			Volumes:           volumes,
		},
	}
}

// bootstrapSecrets mounts the host copy of tls/ and auth/ read-only.
func bootstrapSecrets() (corev1.Volume, corev1.VolumeMount) {
	return hostPathVolume("bootstrap-secrets", BootstrapSecretsDir, corev1.HostPathDirectory, true)
}

func etcdPod(cfg *config.Config) *corev1.Pod { return etcdPodWith(cfg, etcdFlags(cfg)) }

// EtcdMemberPod is the etcd static pod of a control-plane node that joins the existing
// etcd cluster initialCluster ("name=https://ip:2380,…", this member included).
func EtcdMemberPod(cfg *config.Config, initialCluster string) *corev1.Pod {
	f := etcdFlags(cfg)
	f["initial-cluster"] = initialCluster
	f["initial-cluster-state"] = "existing"
	return etcdPodWith(cfg, f)
}

func etcdPodWith(cfg *config.Config, f flags) *corev1.Pod {
	local := cfg.Cluster.Etcd.Local
	dataVol, dataMount := hostPathVolume("etcd-data", local.DataDir, corev1.HostPathDirectoryOrCreate, false)
	certVol, certMount := hostPathVolume("etcd-certs", EtcdPKIDir, corev1.HostPathDirectory, true)
	lo := loopback(cfg.Node.AdvertiseAddress)
	// Liveness asks a serializable health check that ignores the NOSPACE alarm: a member
	// that lost quorum or ran out of quota is not helped by a restart. Readiness uses
	// etcd 3.6's /readyz.
	health := "/health?exclude=NOSPACE&serializable=true"
	c := corev1.Container{
		Name:            nameEtcd,
		Image:           cfg.Cluster.Image(config.ImageEtcd),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         f.command("etcd", local.ExtraArgs),
		Resources:       requests(100, 100),
		LivenessProbe:   probe(lo, etcdMetricsPort, health, corev1.URISchemeHTTP, livenessPeriod, livenessFailures),
		ReadinessProbe:  probe(lo, etcdMetricsPort, "/readyz", corev1.URISchemeHTTP, readinessPeriod, readinessFailures),
		StartupProbe:    probe(lo, etcdMetricsPort, health, corev1.URISchemeHTTP, startupPeriod, startupFailures),
		VolumeMounts:    []corev1.VolumeMount{dataMount, certMount},
	}
	p := staticPod(nameEtcd, false, c, []corev1.Volume{dataVol, certVol})
	annotateEtcd(p, f, local.ExtraArgs)
	return p
}

// externalEtcdVolumes mounts the external etcd client files, which live on the
// control-plane hosts, at their host paths.
func externalEtcdVolumes(cfg *config.Config) ([]corev1.Volume, []corev1.VolumeMount) {
	e := cfg.Cluster.Etcd.External
	if e == nil {
		return nil, nil
	}
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	for _, f := range []struct{ name, path string }{
		{"etcd-external-ca", e.CAFile}, {"etcd-external-cert", e.CertFile}, {"etcd-external-key", e.KeyFile},
	} {
		v, m := hostPathVolume(f.name, f.path, corev1.HostPathFile, true)
		vols, mounts = append(vols, v), append(mounts, m)
	}
	return vols, mounts
}

// apiServerHostVolumes are the host paths an apiserver (temporary or self-hosted) mounts
// besides its credentials: the external etcd client files, and the audit log directory,
// read-write, created by the kubelet if init (or join) did not create it 0700.
func apiServerHostVolumes(cfg *config.Config) ([]corev1.Volume, []corev1.VolumeMount) {
	vols, mounts := externalEtcdVolumes(cfg)
	if a := &cfg.Cluster.APIServer.Audit; a.On() {
		v, m := hostPathVolume("audit-log", a.LogDir, corev1.HostPathDirectoryOrCreate, false)
		vols, mounts = append(vols, v), append(mounts, m)
	}
	return vols, mounts
}

// apiServerContainer is kube-apiserver's container. bind, when set, is its only listen
// address (and where it is probed); otherwise it listens on every address.
func apiServerContainer(cfg *config.Config, p filePaths, advertise, bind string) corev1.Container {
	f := apiServerFlags(cfg, p, advertise)
	probeHost := loopback(cfg.Node.AdvertiseAddress)
	if bind != "" {
		f["bind-address"] = bind
		probeHost = bind
		// Bound to the node's address, it is stopped behind a fence (init's teardown holds
		// new connections until its listener is gone): it must close the listener at once.
		f["shutdown-delay-duration"] = "0s"
	}
	c := corev1.Container{
		Name:            nameAPIServer,
		Image:           cfg.Cluster.Image(config.ImageAPIServer),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         f.command(nameAPIServer, extraFlags(f, cfg.Cluster.APIServer.Component)),
		// Plain TCP listeners, not MPTCP (Go's default since 1.24): only a TCP listener
		// can be steered, so that a starting apiserver gets no connection before it is
		// ready (internal/steer, docs/no-api-gap.md).
		Env:       []corev1.EnvVar{{Name: "GODEBUG", Value: "multipathtcp=0"}},
		Resources: withResources(requests(250, 0), cfg.Cluster.APIServer.Resources),
	}
	componentProbes(&c, probeHost, apiServerPort, "/livez", "/readyz")
	return c
}

func bootstrapAPIServer(cfg *config.Config) *corev1.Pod {
	vol, mount := bootstrapSecrets()
	// The temporary apiserver listens on the advertise address only, the self-hosted one
	// on every address. Both share port 6443, yet each one's loopback client (which
	// trusts only its own in-memory certificate) reaches itself: the temporary one's at
	// the advertise address, where the more specific listener wins; the self-hosted
	// one's at [::1]/127.0.0.1, where only it listens. Clients of the endpoint stay on
	// the temporary apiserver until it closes its socket, then reach the self-hosted one.
	c := apiServerContainer(cfg, bootstrapPath, cfg.Node.AdvertiseAddress, cfg.Node.AdvertiseAddress)
	hostVols, hostMounts := apiServerHostVolumes(cfg)
	c.VolumeMounts = append([]corev1.VolumeMount{mount}, hostMounts...)
	pod := staticPod(nameAPIServer, true, c, append([]corev1.Volume{vol}, hostVols...))
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](apiServerTerminationSeconds)
	return pod
}

// leaderElected describes kube-controller-manager or kube-scheduler for their container.
type leaderElected struct {
	name, image string
	flags       flags
	settings    config.Component
	cpuMilli    int64
	port        int
	readyPath   string
}

// container builds the component's container; apiServer, when set, overrides the server
// of its kubeconfig.
func (l leaderElected) container(apiServer string) corev1.Container {
	if apiServer != "" {
		l.flags["master"] = apiServer
	}
	c := corev1.Container{
		Name:            l.name,
		Image:           l.image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         l.flags.command(l.name, extraFlags(l.flags, l.settings)),
		Resources:       withResources(requests(l.cpuMilli, 0), l.settings.Resources),
	}
	componentProbes(&c, "127.0.0.1", l.port, "/healthz", l.readyPath)
	return c
}

func controllerManagerContainer(cfg *config.Config, p filePaths, apiServer string) corev1.Container {
	return leaderElected{nameControllerManager, cfg.Cluster.Image(config.ImageControllerManager),
		controllerManagerFlags(cfg, p), cfg.Cluster.ControllerManager, 200, controllerManagerPort, "/healthz"}.container(apiServer)
}

func bootstrapControllerManager(cfg *config.Config) *corev1.Pod {
	vol, mount := bootstrapSecrets()
	c := controllerManagerContainer(cfg, bootstrapPath, "")
	c.VolumeMounts = []corev1.VolumeMount{mount}
	return staticPod(nameControllerManager, true, c, []corev1.Volume{vol})
}

func schedulerContainer(cfg *config.Config, p filePaths, apiServer string) corev1.Container {
	return leaderElected{nameScheduler, cfg.Cluster.Image(config.ImageScheduler),
		schedulerFlags(p), cfg.Cluster.Scheduler, 100, schedulerPort, "/readyz"}.container(apiServer)
}

func bootstrapScheduler(cfg *config.Config) *corev1.Pod {
	vol, mount := bootstrapSecrets()
	c := schedulerContainer(cfg, bootstrapPath, "")
	c.VolumeMounts = []corev1.VolumeMount{mount}
	return staticPod(nameScheduler, true, c, []corev1.Volume{vol})
}
