package manifests

import (
	"encoding/json"
	"k8s.io/apimachinery/pkg/api/meta"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/steer"
)

// podSpec returns the pod spec an object runs, if it runs pods.
func podSpec(obj runtime.Object) (*corev1.PodSpec, bool) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec, true
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec, true
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec, true
	}
	return nil, false
}

func find[T runtime.Object](t *testing.T, assets []Asset, file string) T {
	t.Helper()
	for _, a := range assets {
		if a.Path == file {
			obj, ok := a.Object.(T)
			if !ok {
				t.Fatalf("%s holds a %T", file, a.Object)
			}
			return obj
		}
	}
	t.Fatalf("no asset %s", file)
	var zero T
	return zero
}

// flagValues returns the values of --name in a command, in order.
func flagValues(cmd []string, name string) []string {
	var vals []string
	for _, arg := range cmd {
		if v, ok := strings.CutPrefix(arg, "--"+name+"="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// controlPlaneCommands are the commands of every apiserver, controller-manager and
// scheduler container, bootstrap and self-hosted, by asset path.
func controlPlaneCommands(t *testing.T, assets []Asset) map[string][]string {
	t.Helper()
	cmds := map[string][]string{}
	for _, a := range assets {
		spec, ok := podSpec(a.Object)
		if !ok {
			continue
		}
		for _, c := range spec.Containers {
			switch c.Name {
			case nameAPIServer, nameControllerManager, nameScheduler:
				cmds[a.Path] = c.Command
			}
		}
	}
	if len(cmds) != 6 {
		t.Fatalf("found %d control-plane containers, want 3 static pods and 3 self-hosted workloads: %v", len(cmds), cmds)
	}
	return cmds
}

func TestHostNetworkPodsDeclareNoPorts(t *testing.T) {
	for name, mk := range cases {
		hostNetwork := 0
		for _, a := range render(t, mk(t)) {
			spec, ok := podSpec(a.Object)
			if !ok || !spec.HostNetwork {
				continue
			}
			hostNetwork++
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				if len(c.Ports) > 0 {
					t.Errorf("%s/%s: host-network container %s declares ports %v", name, a.Path, c.Name, c.Ports)
				}
			}
		}
		if hostNetwork == 0 {
			t.Fatalf("%s: no host-network pod rendered", name)
		}
	}
}

func TestEveryObjectIsManagedBySelfkube(t *testing.T) {
	for name, mk := range cases {
		for _, a := range render(t, mk(t)) {
			m, err := metaOf(a.Object)
			if err != nil {
				t.Fatal(err)
			}
			if m.GetLabels()[LabelManagedBy] != ManagedBy {
				t.Errorf("%s/%s: labels %v lack %s=%s", name, a.Path, m.GetLabels(), LabelManagedBy, ManagedBy)
			}
			switch o := a.Object.(type) {
			case *appsv1.DaemonSet:
				checkTemplateLabels(t, name+"/"+a.Path, o.Spec.Template.Labels, o.Spec.Selector.MatchLabels)
			case *appsv1.Deployment:
				checkTemplateLabels(t, name+"/"+a.Path, o.Spec.Template.Labels, o.Spec.Selector.MatchLabels)
			}
		}
	}
}

func checkTemplateLabels(t *testing.T, where string, tmpl, selector map[string]string) {
	t.Helper()
	if tmpl[LabelManagedBy] != ManagedBy {
		t.Errorf("%s: pod template labels %v lack %s", where, tmpl, LabelManagedBy)
	}
	if !labels.SelectorFromSet(selector).Matches(labels.Set(tmpl)) {
		t.Errorf("%s: selector %v does not select its own template %v", where, selector, tmpl)
	}
}

func TestSelectorsDoNotAdoptBootstrapPods(t *testing.T) {
	// The mirror pods of the temporary static pods must not be claimed by the
	// self-hosted controllers, nor counted by their disruption budgets.
	assets := render(t, defaultConfig(t))
	var static []*corev1.Pod
	for _, a := range assets {
		if p, ok := a.Object.(*corev1.Pod); ok {
			static = append(static, p)
		}
	}
	for _, a := range assets {
		var sel map[string]string
		switch o := a.Object.(type) {
		case *appsv1.DaemonSet:
			sel = o.Spec.Selector.MatchLabels
		case *appsv1.Deployment:
			sel = o.Spec.Selector.MatchLabels
		case *policyv1.PodDisruptionBudget:
			sel = o.Spec.Selector.MatchLabels
		default:
			continue
		}
		for _, p := range static {
			if labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels)) {
				t.Errorf("%s selects the static pod %s", a.Path, p.Name)
			}
		}
	}
}

func TestControlPlanePermitsPortSharing(t *testing.T) {
	for name, mk := range cases {
		for file, cmd := range controlPlaneCommands(t, render(t, mk(t))) {
			if got := flagValues(cmd, "permit-port-sharing"); !slices.Equal(got, []string{"true"}) {
				t.Errorf("%s/%s: --permit-port-sharing values %v, want [true]", name, file, got)
			}
		}
	}
}

func TestFlagsAreSortedAndUnique(t *testing.T) {
	for name, mk := range cases {
		for _, a := range render(t, mk(t)) {
			spec, ok := podSpec(a.Object)
			if !ok {
				continue
			}
			for _, c := range spec.Containers {
				if len(c.Command) < 2 || !strings.HasPrefix(c.Command[1], "--") || c.Name == nameProxy {
					continue
				}
				var names []string
				for _, arg := range c.Command[1:] {
					n, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
					names = append(names, n)
				}
				if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
					t.Errorf("%s/%s: flags not sorted and unique: %v", name, a.Path, names)
				}
			}
		}
	}
}

func TestExtraArgsOverrideAndAddFlags(t *testing.T) {
	cfg := defaultConfig(t)
	cfg.Cluster.APIServer.ExtraArgs = map[string]string{
		"enable-admission-plugins": "NodeRestriction,AlwaysPullImages", "profiling": "false",
	}
	cfg.Cluster.ControllerManager.ExtraArgs = map[string]string{"controllers": "*,tokencleaner"}
	cfg.Cluster.Scheduler.ExtraArgs = map[string]string{"leader-elect": "false"}
	cfg.Cluster.Etcd.Local.ExtraArgs = map[string]string{"snapshot-count": "5000"}
	assets := render(t, cfg)

	want := map[string]map[string]string{
		nameAPIServer:         {"enable-admission-plugins": "NodeRestriction,AlwaysPullImages", "profiling": "false"},
		nameControllerManager: {"controllers": "*,tokencleaner"},
		nameScheduler:         {"leader-elect": "false"},
	}
	for file, cmd := range controlPlaneCommands(t, assets) {
		for component, flags := range want {
			if cmd[0] != component {
				continue
			}
			for flag, value := range flags {
				if got := flagValues(cmd, flag); !slices.Equal(got, []string{value}) {
					t.Errorf("%s: --%s = %v, want [%s]", file, flag, got, value)
				}
			}
		}
	}
	etcd := find[*corev1.Pod](t, assets, "bootstrap-manifests/etcd.yaml")
	if got := flagValues(etcd.Spec.Containers[0].Command, "snapshot-count"); !slices.Equal(got, []string{"5000"}) {
		t.Errorf("etcd --snapshot-count = %v, want [5000]", got)
	}
}

func TestFeatureGatesMergeAndResourcesOverride(t *testing.T) {
	cfg := defaultConfig(t)
	// selfkube turns one gate on for the controller manager: a user's gates join it, and
	// may turn it off.
	cfg.Cluster.ControllerManager.FeatureGates = map[string]bool{"Zeta": true, "ControllerManagerReleaseLeaderElectionLockOnExit": false}
	cfg.Cluster.APIServer.FeatureGates = map[string]bool{"Alpha": true}
	cfg.Cluster.APIServer.Resources = config.Resources{Requests: map[string]string{"memory": "512Mi"}, Limits: map[string]string{"cpu": "2"}}
	assets := render(t, cfg)
	want := map[string]string{
		nameAPIServer:         "Alpha=true",
		nameControllerManager: "ControllerManagerReleaseLeaderElectionLockOnExit=false,Zeta=true",
	}
	for file, cmd := range controlPlaneCommands(t, assets) {
		if w, ok := want[cmd[0]]; ok {
			if got := flagValues(cmd, "feature-gates"); !slices.Equal(got, []string{w}) {
				t.Errorf("%s: --feature-gates = %v, want [%s]", file, got, w)
			}
		}
	}
	ds := find[*appsv1.DaemonSet](t, assets, "manifests/15-kube-apiserver-daemonset.yaml")
	r := ds.Spec.Template.Spec.Containers[0].Resources
	if r.Requests.Cpu().MilliValue() != 250 || r.Requests.Memory().String() != "512Mi" || r.Limits.Cpu().String() != "2" {
		t.Errorf("apiserver resources = %v / %v; want the default cpu request 250m kept, memory 512Mi added, cpu limit 2", r.Requests, r.Limits)
	}
}

func TestSecretsHoldOnlyWhatEachComponentNeeds(t *testing.T) {
	want := map[string]map[string][]string{
		"default": {
			nameAPIServer: {"apiserver-etcd-client.crt", "apiserver-etcd-client.key", "apiserver-kubelet-client.crt",
				"apiserver-kubelet-client.key", "apiserver.crt", "apiserver.key", "audit-policy.yaml", "ca.crt",
				"encryption-config.yaml", "etcd-ca.crt", "front-proxy-ca.crt", "front-proxy-client.crt",
				"front-proxy-client.key", "sa.key", "sa.pub"},
			nameControllerManager: {"ca.crt", "ca.key", "controller-manager.conf", "front-proxy-ca.crt", "sa.key"},
			nameScheduler:         {"scheduler.conf"},
		},
		// With external etcd the API server's etcd client files are host files.
		"custom": {
			nameAPIServer: {"apiserver-kubelet-client.crt", "apiserver-kubelet-client.key", "apiserver.crt",
				"apiserver.key", "audit-policy.yaml", "ca.crt", "encryption-config.yaml", "front-proxy-ca.crt",
				"front-proxy-client.crt", "front-proxy-client.key", "sa.key", "sa.pub"},
			nameControllerManager: {"ca.crt", "ca.key", "controller-manager.conf", "front-proxy-ca.crt", "sa.key"},
			nameScheduler:         {"scheduler.conf"},
		},
	}
	for name, mk := range cases {
		got := map[string][]string{}
		for _, a := range render(t, mk(t)) {
			s, ok := a.Object.(*corev1.Secret)
			if !ok {
				continue
			}
			for k := range s.Data {
				got[s.Name] = append(got[s.Name], k)
			}
			slices.Sort(got[s.Name])
			for k, v := range s.Data {
				if strings.HasSuffix(k, ".key") && strings.Contains(k, "ca") && s.Name != nameControllerManager {
					t.Errorf("%s: Secret %s holds the CA private key %s", name, s.Name, k)
				}
				if len(v) == 0 {
					t.Errorf("%s: Secret %s key %s is empty", name, s.Name, k)
				}
			}
		}
		if diff := cmp.Diff(want[name], got); diff != "" {
			t.Errorf("%s: Secret keys (-want +got):\n%s", name, diff)
		}
	}
}

// TestCredentialPathsResolve checks the contract between flags, mounts and files: every
// path a self-hosted component is given under SecretsMountDir is a key of its Secret,
// and every path a static pod is given under BootstrapSecretsDir is an asset file.
func TestCredentialPathsResolve(t *testing.T) {
	files := fakeFiles()
	for name, mk := range cases {
		assets := render(t, mk(t))
		secrets := map[string]*corev1.Secret{}
		for _, a := range assets {
			if s, ok := a.Object.(*corev1.Secret); ok {
				secrets[s.Name] = s
			}
		}
		for file, cmd := range controlPlaneCommands(t, assets) {
			for _, arg := range cmd[1:] {
				_, value, _ := strings.Cut(arg, "=")
				if rel, ok := strings.CutPrefix(value, SecretsMountDir+"/"); ok {
					if _, ok := secrets[cmd[0]].Data[rel]; !ok {
						t.Errorf("%s/%s: %s names %s, which the %s Secret lacks", name, file, arg, rel, cmd[0])
					}
				}
				if rel, ok := strings.CutPrefix(value, BootstrapSecretsDir+"/"); ok {
					if _, ok := files[rel]; !ok {
						t.Errorf("%s/%s: %s names %s, which is not an asset file", name, file, arg, rel)
					}
				}
				if strings.HasPrefix(value, "/") && !strings.HasPrefix(value, SecretsMountDir+"/") &&
					!strings.HasPrefix(value, BootstrapSecretsDir+"/") && !isExternalEtcdFile(mk(t), value) &&
					!isAuditLog(mk(t), value) {
					t.Errorf("%s/%s: %s points outside the mounted credentials", name, file, arg)
				}
			}
		}
	}
}

func isAuditLog(cfg *config.Config, p string) bool {
	return path.Dir(p) == cfg.Cluster.APIServer.Audit.LogDir
}

func isExternalEtcdFile(cfg *config.Config, p string) bool {
	e := cfg.Cluster.Etcd.External
	return e != nil && (p == e.CAFile || p == e.CertFile || p == e.KeyFile)
}

func TestMountsMatchVolumes(t *testing.T) {
	for name, mk := range cases {
		for _, a := range render(t, mk(t)) {
			spec, ok := podSpec(a.Object)
			if !ok {
				continue
			}
			vols := map[string]bool{}
			for _, v := range spec.Volumes {
				vols[v.Name] = true
			}
			mounted := map[string]bool{}
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				for _, m := range c.VolumeMounts {
					if !vols[m.Name] {
						t.Errorf("%s/%s: mount %s has no volume", name, a.Path, m.Name)
					}
					mounted[m.Name] = true
				}
			}
			for v := range vols {
				if !mounted[v] {
					t.Errorf("%s/%s: volume %s is not mounted", name, a.Path, v)
				}
			}
		}
	}
}

func TestAPIServerDaemonSetSurgesWithoutUnavailability(t *testing.T) {
	ds := find[*appsv1.DaemonSet](t, render(t, defaultConfig(t)), "manifests/15-kube-apiserver-daemonset.yaml")
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil ||
		ru.MaxSurge == nil || *ru.MaxSurge != intstr.FromInt32(1) ||
		ru.MaxUnavailable == nil || *ru.MaxUnavailable != intstr.FromInt32(0) {
		t.Fatalf("update strategy %+v, want RollingUpdate with maxSurge 1, maxUnavailable 0", ds.Spec.UpdateStrategy)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	if got := flagValues(c.Command, "advertise-address"); !slices.Equal(got, []string{"$(HOST_IP)"}) {
		t.Errorf("--advertise-address = %v", got)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e, ok := env["HOST_IP"]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("HOST_IP does not come from status.hostIP: %+v", c.Env)
	}
	// Only a plain TCP listener can be steered (internal/steer): no MPTCP.
	if env["GODEBUG"].Value != "multipathtcp=0" {
		t.Errorf("GODEBUG = %q, want multipathtcp=0", env["GODEBUG"].Value)
	}
	if ds.Spec.Template.Annotations[checkpoint.AnnotationCheckpoint] != checkpoint.CheckpointAPIServer {
		t.Errorf("pod template lacks %s=%s", checkpoint.AnnotationCheckpoint, checkpoint.CheckpointAPIServer)
	}
}

func TestControlPlaneDeploymentsKeepOneRunning(t *testing.T) {
	assets := render(t, defaultConfig(t))
	for _, name := range []string{nameControllerManager, nameScheduler} {
		var d *appsv1.Deployment
		var pdb *policyv1.PodDisruptionBudget
		for _, a := range assets {
			switch o := a.Object.(type) {
			case *appsv1.Deployment:
				if o.Name == name {
					d = o
				}
			case *policyv1.PodDisruptionBudget:
				if o.Name == name {
					pdb = o
				}
			}
		}
		if d == nil || pdb == nil {
			t.Fatalf("%s: Deployment %v, PodDisruptionBudget %v", name, d, pdb)
		}
		if *d.Spec.Replicas != 2 || *d.Spec.Strategy.RollingUpdate.MaxUnavailable != intstr.FromInt32(0) {
			t.Errorf("%s: replicas %d, strategy %+v", name, *d.Spec.Replicas, d.Spec.Strategy)
		}
		if *pdb.Spec.MinAvailable != intstr.FromInt32(1) ||
			!labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: budget %+v does not keep one of the Deployment's pods", name, pdb.Spec)
		}
		if got := flagValues(d.Spec.Template.Spec.Containers[0].Command, "leader-elect"); !slices.Equal(got, []string{"true"}) {
			t.Errorf("%s: --leader-elect = %v", name, got)
		}
	}
}

func TestBootstrapPods(t *testing.T) {
	for name, mk := range cases {
		cfg := mk(t)
		boot, err := Bootstrap(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range boot {
			p := a.Object.(*corev1.Pod)
			got = append(got, a.Path)
			temporary := p.Annotations[AnnotationTemporary] == "true"
			if temporary != (p.Name != nameEtcd) {
				t.Errorf("%s/%s: temporary annotation %v", name, a.Path, p.Annotations)
			}
			if !p.Spec.HostNetwork || p.Spec.PriorityClassName != priorityNodeCritical || p.Namespace != Namespace {
				t.Errorf("%s/%s: not a host-network system-node-critical kube-system pod", name, a.Path)
			}
			if temporary {
				for _, m := range p.Spec.Containers[0].VolumeMounts {
					if m.MountPath == BootstrapSecretsDir && !m.ReadOnly {
						t.Errorf("%s/%s: bootstrap secrets are mounted writable", name, a.Path)
					}
				}
			}
		}
		want := []string{"bootstrap-manifests/etcd.yaml", "bootstrap-manifests/kube-apiserver.yaml",
			"bootstrap-manifests/kube-controller-manager.yaml", "bootstrap-manifests/kube-scheduler.yaml"}
		if cfg.Cluster.Etcd.External != nil {
			want = want[1:] // etcd is not ours to run
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: bootstrap assets (-want +got):\n%s", name, diff)
		}
	}
}

func TestEtcdFlagsForIPv6(t *testing.T) {
	cfg := validConfig(t, &config.Config{Node: config.NodeConfiguration{AdvertiseAddress: "2001:db8::10"},
		Cluster: config.ClusterConfiguration{Networking: config.Networking{
			PodSubnet: "fd00:10:244::/56", ServiceSubnet: "fd00:10:96::/112"}}})
	boot, err := Bootstrap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	etcd := find[*corev1.Pod](t, boot, "bootstrap-manifests/etcd.yaml").Spec.Containers[0]
	for flag, want := range map[string]string{
		"listen-client-urls":  "https://[::1]:2379,https://[2001:db8::10]:2379",
		"listen-metrics-urls": "http://[::1]:2381",
		"initial-cluster":     "node1=https://[2001:db8::10]:2380",
	} {
		if got := flagValues(etcd.Command, flag); !slices.Equal(got, []string{want}) {
			t.Errorf("--%s = %v, want %s", flag, got, want)
		}
	}
	api := find[*corev1.Pod](t, boot, "bootstrap-manifests/kube-apiserver.yaml").Spec.Containers[0]
	if got := flagValues(api.Command, "etcd-servers"); !slices.Equal(got, []string{"https://[::1]:2379"}) {
		t.Errorf("--etcd-servers = %v", got)
	}
	hosted, err := SelfHosted(cfg, fakeFiles())
	if err != nil {
		t.Fatal(err)
	}
	svc := find[*corev1.Service](t, hosted, "manifests/53-kube-dns-service.yaml")
	if svc.Spec.ClusterIP != "fd00:10:96::a" {
		t.Errorf("kube-dns ClusterIP %s, want fd00:10:96::a", svc.Spec.ClusterIP)
	}
}

func TestMissingFileIsNamed(t *testing.T) {
	cfg := defaultConfig(t)
	for _, missing := range []string{FileCAKey, FileAPIServerEtcdKey, FileSchedulerConf, FileCACert} {
		files := fakeFiles()
		delete(files, missing)
		_, err := SelfHosted(cfg, files)
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: error %v, want one naming it", missing, err)
		}
	}
	// Files the Secrets do not carry are not required.
	files := fakeFiles()
	for _, unused := range []string{FileEtcdCAKey, FileAdminConf, FileSuperAdminConf, FileKubeletConf, FileFrontProxyCAKey} {
		delete(files, unused)
	}
	if _, err := SelfHosted(cfg, files); err != nil {
		t.Errorf("SelfHosted needs a file no Secret carries: %v", err)
	}
}

func TestKubeProxyConfig(t *testing.T) {
	cfg := customConfig(t)
	assets := render(t, cfg)
	cm := find[*corev1.ConfigMap](t, assets, "manifests/42-kube-proxy-configmap.yaml")

	var pc kubeproxyv1alpha1.KubeProxyConfiguration
	if err := yaml.UnmarshalStrict([]byte(cm.Data[ProxyConfigKey]), &pc); err != nil {
		t.Fatalf("decoding %s strictly: %v", ProxyConfigKey, err)
	}
	if pc.Kind != "KubeProxyConfiguration" || pc.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" ||
		string(pc.Mode) != "nftables" || pc.ClusterCIDR != "10.32.0.0/12" ||
		pc.Conntrack.MaxPerCore == nil || *pc.Conntrack.MaxPerCore != 0 {
		t.Errorf("KubeProxyConfiguration = %+v", pc)
	}
	if want := path.Join(proxyConfigDir, ProxyKubeconfigKey); pc.ClientConnection.Kubeconfig != want {
		t.Errorf("kubeconfig %q, want %q", pc.ClientConnection.Kubeconfig, want)
	}

	var kc clientcmdv1.Config
	if err := yaml.UnmarshalStrict([]byte(cm.Data[ProxyKubeconfigKey]), &kc); err != nil {
		t.Fatalf("decoding %s strictly: %v", ProxyKubeconfigKey, err)
	}
	// kube-proxy goes through its pod's api-proxy, which starts at the controlPlaneEndpoint.
	if len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != "https://127.0.0.1:6445" ||
		len(kc.AuthInfos) != 1 || kc.AuthInfos[0].AuthInfo.TokenFile != serviceAccountDir+"/token" {
		t.Errorf("kube-proxy kubeconfig = %+v", kc)
	}

	ds := find[*appsv1.DaemonSet](t, assets, "manifests/45-kube-proxy-daemonset.yaml")
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || !*spec.Containers[0].SecurityContext.Privileged || spec.ServiceAccountName != nameProxy {
		t.Errorf("kube-proxy pod: hostNetwork %v, security %+v, service account %q",
			spec.HostNetwork, spec.Containers[0].SecurityContext, spec.ServiceAccountName)
	}
	if len(spec.InitContainers) != 1 {
		t.Fatalf("kube-proxy pod: %d init containers, want the api-proxy sidecar", len(spec.InitContainers))
	}
	sidecar := spec.InitContainers[0]
	if sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("the api-proxy is not a sidecar (restartPolicy %v): it must run beside kube-proxy", sidecar.RestartPolicy)
	}
	for _, want := range []string{"api-proxy", "--listen=127.0.0.1:6445", "--backend=api.example.internal:6443",
		"--kubeconfig=" + path.Join(proxyConfigDir, ProxyKubeconfigKey)} {
		if !slices.Contains(sidecar.Command, want) {
			t.Errorf("api-proxy sidecar command %q lacks %s", sidecar.Command, want)
		}
	}
	// The sidecar reads the apiserver endpoints with kube-proxy's credentials.
	rb := find[*rbacv1.RoleBinding](t, assets, "manifests/01-selfkube-api-proxy-rolebinding.yaml")
	if !slices.Contains(rb.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: nameProxy, Namespace: Namespace}) {
		t.Errorf("kube-proxy's service account may not read the apiserver endpoints: %+v", rb.Subjects)
	}
	crb := find[*rbacv1.ClusterRoleBinding](t, assets, "manifests/41-kubeadm-node-proxier-clusterrolebinding.yaml")
	if crb.RoleRef.Name != "system:node-proxier" || crb.Subjects[0].Name != nameProxy || crb.Subjects[0].Namespace != Namespace {
		t.Errorf("node-proxier binding %+v", crb)
	}
}

func TestCoreDNS(t *testing.T) {
	for name, tc := range map[string]struct {
		mk     func(testing.TB) *config.Config
		ip     string
		domain string
	}{
		"default": {defaultConfig, "10.96.0.10", "cluster.local"},
		"custom":  {customConfig, "172.20.0.10", "example.internal"},
	} {
		assets := render(t, tc.mk(t))
		svc := find[*corev1.Service](t, assets, "manifests/53-kube-dns-service.yaml")
		if svc.Spec.ClusterIP != tc.ip {
			t.Errorf("%s: kube-dns ClusterIP %s, want %s", name, svc.Spec.ClusterIP, tc.ip)
		}
		d := find[*appsv1.Deployment](t, assets, "manifests/55-coredns-deployment.yaml")
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: kube-dns selects %v, not the CoreDNS pods %v", name, svc.Spec.Selector, d.Spec.Template.Labels)
		}
		cm := find[*corev1.ConfigMap](t, assets, "manifests/52-coredns-configmap.yaml")
		for _, want := range []string{"kubernetes " + tc.domain + " in-addr.arpa ip6.arpa", "forward . /etc/resolv.conf",
			"cache 30", "loop", "reload", "health", "ready"} {
			if !strings.Contains(cm.Data["Corefile"], want) {
				t.Errorf("%s: Corefile lacks %q:\n%s", name, want, cm.Data["Corefile"])
			}
		}
		role := find[*rbacv1.ClusterRole](t, assets, "manifests/50-system-coredns-clusterrole.yaml")
		for _, r := range role.Rules {
			if !slices.Equal(r.Verbs, []string{"list", "watch"}) {
				t.Errorf("%s: CoreDNS may %v %v; it only needs list and watch", name, r.Verbs, r.Resources)
			}
		}
	}
}

func TestNodeBootstrapRBAC(t *testing.T) {
	assets := render(t, defaultConfig(t))
	want := map[string][2]string{ // binding → role, group
		"kubeadm:cluster-admins":                        {"cluster-admin", AdminGroup},
		"kubeadm:kubelet-bootstrap":                     {"system:node-bootstrapper", NodeBootstrapGroup},
		"kubeadm:node-autoapprove-certificate-rotation": {"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
		"kubeadm:get-nodes":                             {"kubeadm:get-nodes", NodeBootstrapGroup},
	}
	for _, a := range assets {
		b, ok := a.Object.(*rbacv1.ClusterRoleBinding)
		if !ok {
			continue
		}
		// Stock auto-approval would give a bootstrap token any node's identity: only
		// selfkube's approver decides on bootstrap CSRs.
		if b.RoleRef.Name == "system:certificates.k8s.io:certificatesigningrequests:nodeclient" {
			t.Errorf("%s grants the stock nodeclient auto-approval to %+v", b.Name, b.Subjects)
		}
		w, ok := want[b.Name]
		if !ok {
			continue
		}
		delete(want, b.Name)
		if b.RoleRef.Name != w[0] || len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.GroupKind || b.Subjects[0].Name != w[1] {
			t.Errorf("%s binds %+v to %+v, want %s to group %s", b.Name, b.RoleRef, b.Subjects, w[0], w[1])
		}
	}
	for name := range want {
		t.Errorf("no ClusterRoleBinding %s", name)
	}
}

func BenchmarkRenderDefault(b *testing.B) {
	cfg := defaultConfig(b)
	files := fakeFiles()
	for b.Loop() {
		boot, err := Bootstrap(cfg)
		if err != nil {
			b.Fatal(err)
		}
		hosted, err := SelfHosted(cfg, files)
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range append(boot, hosted...) {
			if _, err := Encode(a.Object); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestAPIServerPodsAreGatedWhereTheSteerRuns: an apiserver pod is Ready only once
// selfkube-apiserver-steer sets its readiness gate, so the steer must run on every node
// the apiserver DaemonSet runs on, whatever taints and conditions that node has; and it
// must see the apiservers' processes and listeners (host PID and network namespaces)
// and probe them with the CA that signed their certificates.
func TestAPIServerPodsAreGatedWhereTheSteerRuns(t *testing.T) {
	assets := render(t, defaultConfig(t))
	api := find[*appsv1.DaemonSet](t, assets, "manifests/15-kube-apiserver-daemonset.yaml").Spec.Template.Spec
	st := find[*appsv1.DaemonSet](t, assets, "manifests/87-selfkube-apiserver-steer-daemonset.yaml").Spec.Template.Spec
	if !slices.Contains(api.ReadinessGates, corev1.PodReadinessGate{ConditionType: steer.ConditionServing}) {
		t.Errorf("the apiserver pods have no readiness gate %s: the kubelet's probe through the shared port decides alone", steer.ConditionServing)
	}
	if diff := cmp.Diff(api.NodeSelector, st.NodeSelector); diff != "" {
		t.Errorf("node selectors differ (-apiserver +steer):\n%s", diff)
	}
	for _, tol := range api.Tolerations {
		if !slices.Contains(st.Tolerations, tol) {
			t.Errorf("the steer lacks the apiserver's toleration %+v: an apiserver there would never be Ready", tol)
		}
	}
	if !st.HostPID || !st.HostNetwork {
		t.Errorf("hostPID %v, hostNetwork %v: the steer must see the host's processes and listeners", st.HostPID, st.HostNetwork)
	}
	sc := st.Containers[0].SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "SYS_PTRACE"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || (sc.Privileged != nil && *sc.Privileged) {
		t.Errorf("security context %+v: want only CAP_BPF and CAP_SYS_PTRACE, not privileged", sc)
	}
}

// TestSteerRoleCannotReachSecrets: the steer's API identity may read pods and set their
// status (the gate) and write Events; no Secret, no write to a pod's spec, nothing
// cluster-wide.
func TestSteerRoleCannotReachSecrets(t *testing.T) {
	assets := render(t, defaultConfig(t))
	role := find[*rbacv1.Role](t, assets, "manifests/82-selfkube-apiserver-steer-role.yaml")
	allowed := map[string][]string{"pods": {"get", "list", "watch"}, "pods/status": {"patch"}, "events": {"create", "patch"}}
	for _, r := range role.Rules {
		if !slices.Equal(r.APIGroups, []string{""}) {
			t.Errorf("rule %+v: API groups beyond core", r)
		}
		for _, res := range r.Resources {
			want, ok := allowed[res]
			if !ok {
				t.Errorf("rule %+v grants %s", r, res)
				continue
			}
			for _, v := range r.Verbs {
				if !slices.Contains(want, v) {
					t.Errorf("rule %+v grants %s on %s", r, v, res)
				}
			}
		}
	}
	for _, a := range assets {
		if b, ok := a.Object.(*rbacv1.ClusterRoleBinding); ok {
			for _, s := range b.Subjects {
				if s.Name == nameSteer {
					t.Errorf("%s binds the steer cluster-wide", a.Path)
				}
			}
		}
	}
}

// Every apiserver lists, after its own node's etcd member, the member of every
// control-plane node, so that it keeps serving while its own member restarts; an
// external etcd's endpoints are the user's and stay as given.
func TestAPIServerListsEveryEtcdMember(t *testing.T) {
	servers := func(cluster config.ClusterConfiguration, members []string) string {
		t.Helper()
		w, err := Workloads(cluster, members)
		if err != nil {
			t.Fatal(err)
		}
		for _, arg := range w[nameAPIServer].(*appsv1.DaemonSet).Spec.Template.Spec.Containers[0].Command {
			if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
				return v
			}
		}
		t.Fatal("no --etcd-servers")
		return ""
	}
	cfg := defaultConfig(t)
	if got, want := servers(cfg.Cluster, []string{"10.0.0.3", "10.0.0.2", "10.0.0.1"}),
		"https://127.0.0.1:2379,https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379"; got != want {
		t.Errorf("three members: %s, want %s", got, want)
	}
	if got := servers(cfg.Cluster, nil); got != "https://127.0.0.1:2379" {
		t.Errorf("no member known: %s, want the local one", got)
	}
	ipv6 := validConfig(t, &config.Config{Node: config.NodeConfiguration{AdvertiseAddress: "2001:db8::10"},
		Cluster: config.ClusterConfiguration{Networking: config.Networking{PodSubnet: "fd00:10:244::/56", ServiceSubnet: "fd00:10:96::/112"}}})
	if got, want := servers(ipv6.Cluster, []string{"2001:db8::11", "2001:db8::10"}),
		"https://[::1]:2379,https://[2001:db8::10]:2379,https://[2001:db8::11]:2379"; got != want {
		t.Errorf("IPv6: %s, want %s", got, want)
	}
	own := defaultConfig(t)
	own.Cluster.APIServer.ExtraArgs = map[string]string{"etcd-servers": "https://10.9.9.9:2379"}
	if got := servers(own.Cluster, []string{"10.0.0.1"}); got != "https://10.9.9.9:2379" {
		t.Errorf("the user's own --etcd-servers: %s, want it as given", got)
	}
	external := defaultConfig(t)
	external.Cluster.Etcd = config.Etcd{External: &config.ExternalEtcd{Endpoints: []string{"https://etcd.example:2379"},
		CAFile: "/etc/etcd/ca.crt", CertFile: "/etc/etcd/c.crt", KeyFile: "/etc/etcd/c.key"}}
	if got := servers(external.Cluster, []string{"10.0.0.1"}); got != "https://etcd.example:2379" {
		t.Errorf("external etcd: %s, want its endpoints alone", got)
	}
}

// The operator renders the workloads from the cluster part of the configuration alone;
// they must be exactly the ones init applied, or its first look would roll the control
// plane for nothing.
func TestWorkloadsAreTheSelfHostedOnes(t *testing.T) {
	ipv6 := func(t testing.TB) *config.Config {
		return validConfig(t, &config.Config{Node: config.NodeConfiguration{AdvertiseAddress: "2001:db8::10"},
			Cluster: config.ClusterConfiguration{Networking: config.Networking{
				PodSubnet: "fd00:10:244::/56", ServiceSubnet: "fd00:10:96::/112"}}})
	}
	files := map[string]string{
		nameAPIServer:         "manifests/15-kube-apiserver-daemonset.yaml",
		nameControllerManager: "manifests/25-kube-controller-manager-deployment.yaml",
		nameScheduler:         "manifests/35-kube-scheduler-deployment.yaml",
		nameProxy:             "manifests/45-kube-proxy-daemonset.yaml",
		nameCoreDNS:           "manifests/55-coredns-deployment.yaml",
		nameNetwork:           "manifests/75-selfkube-network-daemonset.yaml",
	}
	for name, mk := range map[string]func(testing.TB) *config.Config{"default": defaultConfig, "custom": customConfig, "ipv6": ipv6} {
		cfg := mk(t)
		assets := render(t, cfg)
		got, err := Workloads(cfg.Cluster, []string{cfg.Node.AdvertiseAddress})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(files) {
			t.Errorf("%s: %d workloads, want %d", name, len(got), len(files))
		}
		for component, file := range files {
			want, err := Encode(find[runtime.Object](t, assets, file))
			if err != nil {
				t.Fatal(err)
			}
			have, err := Encode(got[component])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(have)); diff != "" {
				t.Errorf("%s: the %s workload differs from %s (-init +operator):\n%s", name, component, file, diff)
			}
		}
	}
}

// The etcd version a cluster asks for is its members' image (3.6.16-0 for v3.6.16), and
// the node agent's re-render of a member for a version change replaces that image and
// keeps every flag the member was made with.
func TestEtcdVersionIsTheMembersImage(t *testing.T) {
	cfg := validConfig(t, &config.Config{Cluster: config.ClusterConfiguration{EtcdVersion: "v3.6.16", ImageRepository: "registry.local"}})
	boot, err := Bootstrap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := find[*corev1.Pod](t, boot, "bootstrap-manifests/etcd.yaml")
	if got := EtcdImage(pod); got != "registry.local/etcd:3.6.16-0" {
		t.Errorf("etcd image %q, want registry.local/etcd:3.6.16-0", got)
	}
	changed, err := EtcdWith(pod, map[string]string{"snapshot-count": "5000"}, "registry.local/etcd:3.6.6-0")
	if err != nil {
		t.Fatal(err)
	}
	if got := EtcdImage(changed); got != "registry.local/etcd:3.6.6-0" {
		t.Errorf("re-rendered etcd image %q, want registry.local/etcd:3.6.6-0", got)
	}
	if got := flagValues(changed.Spec.Containers[0].Command, "snapshot-count"); !slices.Equal(got, []string{"5000"}) {
		t.Errorf("--snapshot-count = %v, want 5000", got)
	}
	if got, want := flagValues(changed.Spec.Containers[0].Command, "data-dir"), flagValues(pod.Spec.Containers[0].Command, "data-dir"); !slices.Equal(got, want) || len(got) != 1 {
		t.Errorf("--data-dir = %v, want %v as before", got, want)
	}
	same, err := EtcdWith(pod, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if EtcdImage(same) != EtcdImage(pod) {
		t.Errorf("no image given changed the image to %q", EtcdImage(same))
	}
}

// The controller manager's lease hand-back gate exists from v1.36 on: a v1.35 control
// plane (an upgrade's start) gets no gate it would refuse to start with, and a user's
// gates still reach it.
func TestControllerManagerGateFollowsTheVersion(t *testing.T) {
	for _, tc := range []struct {
		version, user string
		want          []string
	}{
		{"v1.36.3", "", []string{"ControllerManagerReleaseLeaderElectionLockOnExit=true"}},
		{"v1.35.4", "", nil},
		{"v1.35.4", "Zeta", []string{"Zeta=true"}},
	} {
		cfg := defaultConfig(t)
		cfg.Cluster.KubernetesVersion = tc.version
		if tc.user != "" {
			cfg.Cluster.ControllerManager.FeatureGates = map[string]bool{tc.user: true}
		}
		for file, cmd := range controlPlaneCommands(t, render(t, cfg)) {
			if cmd[0] != nameControllerManager {
				continue
			}
			if got := flagValues(cmd, "feature-gates"); !slices.Equal(got, tc.want) {
				t.Errorf("%s at %s with user gate %q: --feature-gates = %v, want %v", file, tc.version, tc.user, got, tc.want)
			}
		}
	}
}

// The checkpoints of the controller manager and the scheduler talk to the apiserver on
// the node's address, where an apiserver checkpoint serves (it does not listen on
// loopback): with the apiserver's DaemonSet deleted, only a controller manager that
// reaches the apiserver's stand-in can create its pods again. The self-hosted pods keep
// loopback. An IPv6 node address is bracketed.
func TestControlPlaneStandInsReachTheAPIServerStandIn(t *testing.T) {
	v6 := validConfig(t, &config.Config{Node: config.NodeConfiguration{AdvertiseAddress: "2001:db8::10"},
		Cluster: config.ClusterConfiguration{Networking: config.Networking{PodSubnet: "fd00:10:244::/56", ServiceSubnet: "fd00:10:96::/112"}}})
	for _, c := range []struct {
		cfg  *config.Config
		want string
	}{{defaultConfig(t), "--master=https://$(HOST_IP):6443"}, {v6, "--master=https://[$(HOST_IP)]:6443"}} {
		w, err := Workloads(c.cfg.Cluster, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{nameControllerManager, nameScheduler} {
			d := w[name].(*appsv1.Deployment)
			ct := d.Spec.Template.Spec.Containers[0]
			if got := flagValues(ct.Command, "master"); !slices.Equal(got, []string{"https://127.0.0.1:6443"}) {
				t.Errorf("%s: the self-hosted pod's --master = %v, want loopback", name, got)
			}
			var args map[string][]string
			if err := json.Unmarshal([]byte(d.Spec.Template.Annotations[checkpoint.AnnotationCheckpointArgs]), &args); err != nil {
				t.Fatalf("%s: %s: %v", name, checkpoint.AnnotationCheckpointArgs, err)
			}
			if !slices.Equal(args[ct.Name], []string{c.want}) {
				t.Errorf("%s: checkpoint args %v, want %s", name, args, c.want)
			}
			if !slices.ContainsFunc(ct.Env, func(e corev1.EnvVar) bool {
				return e.Name == "HOST_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP"
			}) {
				t.Errorf("%s: no HOST_IP from status.hostIP: %+v", name, ct.Env)
			}
		}
	}
}

// The agents recover creates again are exactly the ones init applies: the same objects,
// byte for byte, from the cluster configuration and the node's CRI socket alone.
func TestAgentsAreTheSelfHostedOnes(t *testing.T) {
	for name, mk := range map[string]func(testing.TB) *config.Config{"default": defaultConfig, "custom": customConfig} {
		cfg := mk(t)
		assets := render(t, cfg)
		byName := map[string]string{}
		for _, a := range assets {
			m, err := meta.Accessor(a.Object)
			if err != nil {
				t.Fatal(err)
			}
			data, err := Encode(a.Object)
			if err != nil {
				t.Fatal(err)
			}
			byName[a.Object.GetObjectKind().GroupVersionKind().Kind+"/"+m.GetNamespace()+"/"+m.GetName()] = string(data)
		}
		agents := Agents(cfg.Cluster, cfg.Node.CRISocket)
		if len(agents) < 3 {
			t.Fatalf("%s: %d agent objects", name, len(agents))
		}
		for _, obj := range agents {
			m, err := meta.Accessor(obj)
			if err != nil {
				t.Fatal(err)
			}
			key := obj.GetObjectKind().GroupVersionKind().Kind + "/" + m.GetNamespace() + "/" + m.GetName()
			want, ok := byName[key]
			if !ok {
				t.Errorf("%s: %s is not among init's objects", name, key)
				continue
			}
			have, err := Encode(obj)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, string(have)); diff != "" {
				t.Errorf("%s: %s differs from init's (-init +recover):\n%s", name, key, diff)
			}
		}
	}
}
