package checkpoint

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/internal/checkpoint/checkpointtest"
)

// The node and address of checkpointtest.APIServerPod.
const (
	testNode   = checkpointtest.Node
	testHostIP = checkpointtest.HostIP
)

// secretFiles are the files a Secret volume mounted whole has under volumes/VOLUME.
func secretFiles(volume string, s *corev1.Secret) []File {
	var fs []File
	for k, v := range s.Data {
		fs = append(fs, File{Path: path.Join(volumesDir, volume, k), Data: v})
	}
	slices.SortFunc(fs, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return fs
}

// TestSanitizeAPIServer checkpoints the self-hosted apiserver's pod and checks that the
// result is a static pod the kubelet runs with no API: nothing pins it to a node or
// needs a token, its Secret is files in the checkpoint, no controller adopts its mirror
// pod, and it serves on the node's address.
func TestSanitizeAPIServer(t *testing.T) {
	pod, ds, secret := checkpointtest.APIServerPod(t)
	before := pod.DeepCopy()
	dir := path.Join(CheckpointsDir, CheckpointAPIServer)

	got, files, err := Sanitize(pod, CheckpointAPIServer, dir, Sources{
		Secrets: map[string]*corev1.Secret{secret.Name: secret},
	})
	if err != nil {
		t.Fatalf("Sanitize: %v", err)
	}
	if diff := cmp.Diff(before, pod); diff != "" {
		t.Errorf("Sanitize changed the pod it was given (-before +after):\n%s", diff)
	}

	t.Run("identity", func(t *testing.T) {
		want := metav1.ObjectMeta{
			Name:        "checkpoint-kube-apiserver",
			Namespace:   "kube-system",
			Labels:      map[string]string{LabelCheckpointOf: "kube-apiserver"},
			Annotations: map[string]string{AnnotationCheckpointOf: "kube-apiserver"},
		}
		if diff := cmp.Diff(want, got.ObjectMeta); diff != "" {
			t.Errorf("metadata (-want +got):\n%s", diff)
		}
		if got.APIVersion != "v1" || got.Kind != "Pod" {
			t.Errorf("type = %s %s, want v1 Pod: the kubelet reads pod.yaml as a manifest", got.APIVersion, got.Kind)
		}
		// The annotation that makes a pod a parent must not be on the checkpoint: the
		// runtime would count the checkpoint's own sandbox as its parent running.
		if _, ok := got.Annotations[AnnotationCheckpoint]; ok {
			t.Errorf("the static pod carries %s", AnnotationCheckpoint)
		}
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(labels.Set(got.Labels)) {
			t.Errorf("the DaemonSet's selector %s matches the mirror pod's labels %v: the controller would adopt it", sel, got.Labels)
		}
		// A ReplicaSet's selector is the template's labels plus pod-template-hash.
		if labels.SelectorFromSet(ds.Spec.Template.Labels).Matches(labels.Set(got.Labels)) {
			t.Errorf("the template's labels match the mirror pod's labels %v", got.Labels)
		}
		if diff := cmp.Diff(corev1.PodStatus{}, got.Status); diff != "" {
			t.Errorf("status is kept (-want +got):\n%s", diff)
		}
	})

	t.Run("scheduling and API access", func(t *testing.T) {
		if len(before.Spec.ReadinessGates) == 0 {
			t.Error("the rendered apiserver pod has no readiness gate: this test no longer shows that Sanitize drops it")
		}
		s := got.Spec
		for _, c := range []struct {
			field string
			bad   bool
		}{
			{"nodeName", s.NodeName != ""},
			{"nodeSelector", s.NodeSelector != nil},
			{"affinity", s.Affinity != nil},
			{"tolerations", s.Tolerations != nil},
			{"schedulerName", s.SchedulerName != ""},
			{"serviceAccountName", s.ServiceAccountName != "" || s.DeprecatedServiceAccount != ""}, //nolint:staticcheck // must be cleared too
			{"priority", s.Priority != nil},
			{"preemptionPolicy", s.PreemptionPolicy != nil},
			{"readinessGates", s.ReadinessGates != nil},
		} {
			if c.bad {
				t.Errorf("spec.%s is kept", c.field)
			}
		}
		if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
			t.Errorf("automountServiceAccountToken = %v, want false", s.AutomountServiceAccountToken)
		}
		// Kept: what the component needs to run as before.
		if !s.HostNetwork || s.PriorityClassName != "system-node-critical" || s.DNSPolicy != corev1.DNSDefault {
			t.Errorf("hostNetwork %v, priorityClassName %q, dnsPolicy %q: want true, system-node-critical, Default",
				s.HostNetwork, s.PriorityClassName, s.DNSPolicy)
		}
	})

	t.Run("volumes", func(t *testing.T) {
		// The Secret becomes the checkpoint's files; the audit log's host directory is
		// kept as it is.
		want := []corev1.Volume{{Name: "secrets", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: "/etc/kubernetes/checkpoints/kube-apiserver/volumes/secrets",
			Type: ptr.To(corev1.HostPathDirectory),
		}}}, {Name: "audit-log", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: "/var/log/kubernetes/audit",
			Type: ptr.To(corev1.HostPathDirectoryOrCreate),
		}}}}
		if diff := cmp.Diff(want, got.Spec.Volumes); diff != "" {
			t.Errorf("volumes (-want +got):\n%s", diff)
		}
		if len(secret.Data) == 0 {
			t.Fatal("the rendered Secret has no data")
		}
		if diff := cmp.Diff(secretFiles("secrets", secret), files); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
	})

	t.Run("container", func(t *testing.T) {
		if len(got.Spec.Containers) != 1 {
			t.Fatalf("%d containers, want 1", len(got.Spec.Containers))
		}
		c, orig := got.Spec.Containers[0], before.Spec.Containers[0]
		if diff := cmp.Diff(orig.Command, c.Command); diff != "" {
			t.Errorf("command changed (-want +got):\n%s", diff)
		}
		if c.Image != orig.Image {
			t.Errorf("image = %q, want %q", c.Image, orig.Image)
		}
		// The checkpoint serves on the node's address only; the kubelet expands
		// $(HOST_IP) from the literal variable.
		if diff := cmp.Diff(append(slices.Clone(orig.Args), "--bind-address=$(HOST_IP)", "--shutdown-delay-duration=0s"), c.Args); diff != "" {
			t.Errorf("args (-want +got):\n%s", diff)
		}
		// Literal variables stay (the rendered apiserver listens on plain TCP), the
		// downward-API one becomes the node's address.
		if diff := cmp.Diff([]corev1.EnvVar{{Name: "GODEBUG", Value: "multipathtcp=0"}, {Name: "HOST_IP", Value: testHostIP}}, c.Env); diff != "" {
			t.Errorf("env (-want +got):\n%s", diff)
		}
		wantMounts := []corev1.VolumeMount{{Name: "secrets", MountPath: "/etc/kubernetes/secrets", ReadOnly: true},
			{Name: "audit-log", MountPath: "/var/log/kubernetes/audit"}}
		if diff := cmp.Diff(wantMounts, c.VolumeMounts); diff != "" {
			t.Errorf("volume mounts (-want +got):\n%s", diff)
		}
		if c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil {
			t.Errorf("probes kept: liveness %v, readiness %v, startup %v", c.LivenessProbe != nil, c.ReadinessProbe != nil, c.StartupProbe != nil)
		}
	})
}

// TestSanitizeSources covers the ways a pod can take Secrets, ConfigMaps and its own
// fields, each on a minimal pod.
func TestSanitizeSources(t *testing.T) {
	const dir = "/ck/x"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "certs", Namespace: "kube-system"},
		Data:       map[string][]byte{"ca.crt": []byte("CA"), "tls.key": []byte("KEY")},
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "conf", Namespace: "kube-system"},
		Data:       map[string]string{"config.yaml": "kind: X"},
		BinaryData: map[string][]byte{"blob": {0, 1, 2}},
	}
	src := Sources{
		Secrets: map[string]*corev1.Secret{
			"certs": secret,
			"empty": {ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: "kube-system"}},
		},
		ConfigMaps: map[string]*corev1.ConfigMap{"conf": cm},
	}
	hostPath := func(vol string) corev1.Volume {
		return corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: dir + "/volumes/" + vol, Type: ptr.To(corev1.HostPathDirectory),
		}}}
	}
	mount := func(vol string) corev1.VolumeMount { return corev1.VolumeMount{Name: vol, MountPath: "/m/" + vol} }

	tests := []struct {
		name       string
		volumes    []corev1.Volume
		env        []corev1.EnvVar
		wantVols   []corev1.Volume
		wantMounts []corev1.VolumeMount
		wantFiles  []File
		wantEnv    []corev1.EnvVar
	}{{
		name: "Secret volume with items: only the listed keys, at their paths",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "certs", Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "pki/ca.pem"}},
		}}}},
		wantVols:   []corev1.Volume{hostPath("v")},
		wantMounts: []corev1.VolumeMount{mount("v")},
		wantFiles:  []File{{Path: "volumes/v/pki/ca.pem", Data: []byte("CA")}},
	}, {
		name: "ConfigMap volume: data and binaryData",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "conf"},
		}}}},
		wantVols:   []corev1.Volume{hostPath("v")},
		wantMounts: []corev1.VolumeMount{mount("v")},
		wantFiles:  []File{{Path: "volumes/v/blob", Data: []byte{0, 1, 2}}, {Path: "volumes/v/config.yaml", Data: []byte("kind: X")}},
	}, {
		name: "projected Secret and ConfigMap in one directory",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "certs"},
					Items: []corev1.KeyToPath{{Key: "tls.key", Path: "a/./tls.key"}}}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"},
					Items: []corev1.KeyToPath{{Key: "config.yaml", Path: "config.yaml"}}}},
			},
		}}}},
		wantVols:   []corev1.Volume{hostPath("v")},
		wantMounts: []corev1.VolumeMount{mount("v")},
		wantFiles:  []File{{Path: "volumes/v/a/tls.key", Data: []byte("KEY")}, {Path: "volumes/v/config.yaml", Data: []byte("kind: X")}},
	}, {
		name: "optional missing Secret volume: dropped with its mounts",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "absent", Optional: ptr.To(true),
		}}}, {Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		wantVols:   []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		wantMounts: []corev1.VolumeMount{mount("scratch")},
	}, {
		name: "optional missing projected source: the others are kept",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "certs"},
					Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			},
		}}}},
		wantVols:   []corev1.Volume{hostPath("v")},
		wantMounts: []corev1.VolumeMount{mount("v")},
		wantFiles:  []File{{Path: "volumes/v/ca.crt", Data: []byte("CA")}},
	}, {
		// The kubelet mounts an empty directory: so must the checkpoint, with no
		// reference to the API and no hostPath to a directory that is never written.
		name: "projected volume whose only source is optional and missing: an empty directory",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}},
			},
		}}}},
		wantVols:   []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		wantMounts: []corev1.VolumeMount{mount("v")},
	}, {
		name: "Secret with no keys: an empty directory, not a Secret volume",
		volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "empty",
		}}}},
		wantVols:   []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		wantMounts: []corev1.VolumeMount{mount("v")},
	}, {
		name: "hostPath and emptyDir volumes are kept as they are",
		volumes: []corev1.Volume{
			{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/ssl/certs"}}},
			{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		},
		wantVols: []corev1.Volume{
			{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/ssl/certs"}}},
			{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		},
		wantMounts: []corev1.VolumeMount{mount("h"), mount("e")},
	}, {
		name: "environment from a ConfigMap and the pod become values",
		env: []corev1.EnvVar{
			{Name: "PLAIN", Value: "p"},
			{Name: "CONF", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}, Key: "config.yaml"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		},
		wantEnv: []corev1.EnvVar{
			{Name: "PLAIN", Value: "p"}, {Name: "CONF", Value: "kind: X"},
			{Name: "NODE", Value: testNode}, {Name: "NS", Value: "kube-system"}, {Name: "POD_IP", Value: testHostIP},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := minimalPod(tt.volumes, tt.env)
			got, files, err := Sanitize(pod, "x", dir, src)
			if err != nil {
				t.Fatalf("Sanitize: %v", err)
			}
			c := got.Spec.Containers[0]
			if diff := cmp.Diff(tt.wantVols, got.Spec.Volumes); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMounts, c.VolumeMounts); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantFiles, files); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEnv, c.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

// minimalPod is a host-network pod on testNode with one container that mounts every
// volume at /m/NAME.
func minimalPod(volumes []corev1.Volume, env []corev1.EnvVar) *corev1.Pod {
	c := corev1.Container{Name: "c", Image: "img", Env: env}
	for _, v := range volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/m/" + v.Name})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "kube-system", Annotations: map[string]string{AnnotationCheckpoint: "x"}},
		Spec:       corev1.PodSpec{NodeName: testNode, HostNetwork: true, Containers: []corev1.Container{c}, Volumes: volumes},
		Status:     corev1.PodStatus{HostIP: testHostIP},
	}
}

// TestSanitizeErrors: what cannot be checkpointed is refused with an error that names
// the volume or container and the reason, rather than a static pod that cannot start.
func TestSanitizeErrors(t *testing.T) {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "certs"}, Data: map[string][]byte{"ca.crt": []byte("CA")}}
	secretVol := func(s *corev1.SecretVolumeSource) []corev1.Volume {
		return []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: s}}}
	}
	tests := []struct {
		name       string
		checkpoint string // "x" if empty
		pod        *corev1.Pod
		wantErr    []string // substrings
	}{{
		name:       "invalid checkpoint name",
		checkpoint: "x/../etcd",
		pod:        minimalPod(nil, nil),
		wantErr:    []string{`invalid checkpoint name "x/../etcd"`},
	}, {
		name:    "missing Secret",
		pod:     minimalPod(secretVol(&corev1.SecretVolumeSource{SecretName: "absent"}), nil),
		wantErr: []string{`volume "v"`, `Secret "absent" is not available`},
	}, {
		name:    "missing Secret, explicitly not optional",
		pod:     minimalPod(secretVol(&corev1.SecretVolumeSource{SecretName: "absent", Optional: ptr.To(false)}), nil),
		wantErr: []string{`volume "v"`, `Secret "absent" is not available`},
	}, {
		name: "missing projected Secret",
		pod: minimalPod([]corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}},
		}}}}, nil),
		wantErr: []string{`volume "v"`, `Secret "absent" is not available`},
	}, {
		name: "persistent volume claim",
		pod: minimalPod([]corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"},
		}}}, nil),
		wantErr: []string{`volume "data"`, "only hostPath, emptyDir, Secret, ConfigMap and projected volumes can be checkpointed"},
	}, {
		name: "projected downward API without a token",
		pod: minimalPod([]corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{DownwardAPI: &corev1.DownwardAPIProjection{}}},
		}}}}, nil),
		wantErr: []string{`volume "v"`, "other than Secrets and ConfigMaps"},
	}, {
		name: "item path leaving the volume",
		pod: minimalPod(secretVol(&corev1.SecretVolumeSource{
			SecretName: "certs", Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "a/../../ca.crt"}},
		}), nil),
		wantErr: []string{`volume "v"`, `item path "a/../../ca.crt" leaves the volume`},
	}, {
		name: "absolute item path",
		pod: minimalPod(secretVol(&corev1.SecretVolumeSource{
			SecretName: "certs", Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "/etc/ca.crt"}},
		}), nil),
		wantErr: []string{`volume "v"`, "leaves the volume"},
	}, {
		name: "item of a key the Secret lacks",
		pod: minimalPod(secretVol(&corev1.SecretVolumeSource{
			SecretName: "certs", Items: []corev1.KeyToPath{{Key: "tls.key", Path: "tls.key"}},
		}), nil),
		wantErr: []string{`volume "v"`, `Secret certs has no key "tls.key"`},
	}, {
		name: "envFrom",
		pod: func() *corev1.Pod {
			p := minimalPod(nil, nil)
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "certs"}}}}
			return p
		}(),
		wantErr: []string{`container "c"`, "envFrom cannot be checkpointed"},
	}, {
		// Inlined, the value would show in the mirror pod to everyone who can read pods.
		name: "environment from a Secret",
		pod: minimalPod(nil, []corev1.EnvVar{{Name: "K", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "certs"}, Key: "ca.crt"}}}}),
		wantErr: []string{`container "c"`, "variable K", `key "ca.crt" of Secret "certs"`, "values from Secrets", "cannot be checkpointed", "mount the Secret as a volume"},
	}, {
		name: "environment from a missing Secret key",
		pod: minimalPod(nil, []corev1.EnvVar{{Name: "K", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "certs"}, Key: "nope"}}}}),
		wantErr: []string{`container "c"`, "variable K", "values from Secrets"},
	}, {
		name: "host IP not known yet",
		pod: func() *corev1.Pod {
			p := minimalPod(nil, []corev1.EnvVar{{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}})
			p.Status.HostIP = ""
			return p
		}(),
		wantErr: []string{"variable HOST_IP", "status.hostIP is not known yet"},
	}, {
		name: "malformed checkpoint-args",
		pod: func() *corev1.Pod {
			p := minimalPod(nil, nil)
			p.Annotations[AnnotationCheckpointArgs] = `["--bind-address=$(HOST_IP)"]`
			return p
		}(),
		wantErr: []string{"selfkube.io/checkpoint-args is not a JSON map of container names to arguments"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.checkpoint
			if name == "" {
				name = "x"
			}
			got, files, err := Sanitize(tt.pod, name, "/ck/x", Sources{Secrets: map[string]*corev1.Secret{"certs": secret}})
			if err == nil {
				t.Fatalf("Sanitize succeeded with %d files and pod %v, want an error", len(files), got.Name)
			}
			for _, s := range append(tt.wantErr, "pod kube-system/p") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if got != nil || files != nil {
				t.Errorf("Sanitize returned a pod or files along with its error")
			}
		})
	}
}

// TestSourceNames: the agent fetches exactly the Secrets and ConfigMaps the checkpoint
// needs; in particular not the CA ConfigMap of a token volume, which is dropped (and
// which the checkpointer may not be allowed to read).
func TestSourceNames(t *testing.T) {
	apiServer, _, _ := checkpointtest.APIServerPod(t)
	secretRef := func(name string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k"}}
	}
	cmRef := func(name string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k"}}
	}
	tests := []struct {
		name        string
		spec        corev1.PodSpec
		wantSecrets []string
		wantCMs     []string
	}{{
		name:        "self-hosted apiserver",
		spec:        apiServer.Spec,
		wantSecrets: []string{"kube-apiserver"},
	}, {
		name: "every kind of reference, each name once",
		spec: corev1.PodSpec{
			Volumes: []corev1.Volume{
				{Name: "a", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s1"}}},
				{Name: "b", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c1"}}}},
				{Name: "c", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "s2"}}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "c2"}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "s1"}}},
				}}}},
				{Name: "d", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}},
			},
			InitContainers: []corev1.Container{{Name: "i", Env: []corev1.EnvVar{{Name: "A", ValueFrom: secretRef("s3")}}}},
			Containers: []corev1.Container{{Name: "m", Env: []corev1.EnvVar{
				{Name: "B", ValueFrom: cmRef("c3")}, {Name: "C", ValueFrom: secretRef("s2")}, {Name: "D", Value: "plain"},
			}}},
		},
		// s3 only in an environment variable: Sanitize refuses it, so it is not fetched.
		wantSecrets: []string{"s1", "s2"},
		wantCMs:     []string{"c1", "c2", "c3"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets, cms := SourceNames(&tt.spec)
			if diff := cmp.Diff(tt.wantSecrets, secrets); diff != "" {
				t.Errorf("Secrets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCMs, cms); diff != "" {
				t.Errorf("ConfigMaps (-want +got):\n%s", diff)
			}
		})
	}
}
