package checkpoint

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// File is one file of a checkpoint, relative to its directory.
type File struct {
	Path string
	Data []byte
}

// Sources are the Secrets and ConfigMaps a pod mounts, by name, in the pod's namespace.
type Sources struct {
	Secrets    map[string]*corev1.Secret
	ConfigMaps map[string]*corev1.ConfigMap
}

// volumesDir is where a checkpoint keeps the files of its Secret and ConfigMap volumes,
// relative to the checkpoint's directory.
const volumesDir = "volumes"

// Sanitize turns a running pod into a static pod the kubelet can start with no API:
//   - nothing that pins scheduling or needs the API stays: node name, node selector,
//     affinity, tolerations, service account and its token volumes, readiness gates,
//     status;
//   - Secret and ConfigMap volumes (also inside projected volumes) become hostPath
//     volumes of files in the checkpoint, dir being where the checkpoint lives on the
//     host;
//   - environment variables from ConfigMaps and the pod's status become values; one
//     from a Secret is refused, as envFrom is: as a value in the static pod it would
//     show in the mirror pod to everyone who can read pods of its namespace;
//   - its labels are replaced, so no controller adopts the mirror pod, and the arguments
//     in AnnotationCheckpointArgs are appended to their containers;
//   - probes are dropped: they aim where the parent listens, which a checkpoint may not
//     (the apiserver's checkpoint listens on the node's address only), and a stand-in
//     must not be restarted for it.
//
// It returns the static pod and the files its volumes need. name must be a valid
// checkpoint name (see ValidName).
func Sanitize(pod *corev1.Pod, name, dir string, src Sources) (*corev1.Pod, []File, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, fmt.Errorf("checkpointing pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	out := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        StaticPodName(name),
			Namespace:   pod.Namespace,
			Labels:      map[string]string{LabelCheckpointOf: name},
			Annotations: map[string]string{AnnotationCheckpointOf: name},
		},
	}
	spec := pod.Spec.DeepCopy()
	spec.NodeName = ""
	spec.NodeSelector = nil
	spec.Affinity = nil
	spec.Tolerations = nil
	spec.SchedulerName = ""
	spec.ServiceAccountName = ""
	spec.DeprecatedServiceAccount = "" //nolint:staticcheck // cleared for the same reason
	spec.AutomountServiceAccountToken = ptr.To(false)
	spec.Priority = nil // set again from the class when the mirror pod is admitted
	spec.PreemptionPolicy = nil
	spec.TopologySpreadConstraints = nil
	spec.SchedulingGates = nil
	spec.ResourceClaims = nil
	// A readiness gate is a condition an agent sets through the API on the parent's pod;
	// the mirror pod of a checkpoint would wait for it forever.
	spec.ReadinessGates = nil

	var files []File
	var volumes []corev1.Volume
	dropped := map[string]bool{}
	for _, v := range spec.Volumes {
		vfiles, keep, err := volumeFiles(v, src)
		if err != nil {
			return nil, nil, fmt.Errorf("checkpointing volume %q of pod %s/%s: %w", v.Name, pod.Namespace, pod.Name, err)
		}
		switch {
		case !keep:
			dropped[v.Name] = true
		case vfiles != nil && len(vfiles) == 0:
			// Nothing to write, so no directory to point a hostPath at: the kubelet
			// would mount an empty directory, and so does the checkpoint.
			volumes = append(volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		case vfiles != nil:
			rel := path.Join(volumesDir, v.Name)
			for _, f := range vfiles {
				files = append(files, File{Path: path.Join(rel, f.Path), Data: f.Data})
			}
			volumes = append(volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: path.Join(dir, rel), Type: ptr.To(corev1.HostPathDirectory),
			}}})
		default:
			volumes = append(volumes, v)
		}
	}
	spec.Volumes = volumes

	var extra map[string][]string
	if a := pod.Annotations[AnnotationCheckpointArgs]; a != "" {
		if err := json.Unmarshal([]byte(a), &extra); err != nil {
			return nil, nil, fmt.Errorf("pod %s/%s: annotation %s is not a JSON map of container names to arguments: %w",
				pod.Namespace, pod.Name, AnnotationCheckpointArgs, err)
		}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if err := sanitizeContainer(c, pod, src, dropped); err != nil {
				return nil, nil, fmt.Errorf("checkpointing container %q of pod %s/%s: %w", c.Name, pod.Namespace, pod.Name, err)
			}
			c.Args = append(c.Args, extra[c.Name]...)
		}
	}
	out.Spec = *spec
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return out, files, nil
}

// volumeFiles returns the files a Secret or ConfigMap volume holds (nil for other kinds)
// and whether the volume stays in the static pod (service account tokens do not).
func volumeFiles(v corev1.Volume, src Sources) ([]File, bool, error) {
	switch {
	case v.Secret != nil:
		s, ok := src.Secrets[v.Secret.SecretName]
		if !ok {
			return nil, false, optional(v.Secret.Optional, "Secret", v.Secret.SecretName)
		}
		fs, err := projectKeys(s.Data, v.Secret.Items, "Secret "+s.Name)
		return fs, true, err
	case v.ConfigMap != nil:
		cm, ok := src.ConfigMaps[v.ConfigMap.Name]
		if !ok {
			return nil, false, optional(v.ConfigMap.Optional, "ConfigMap", v.ConfigMap.Name)
		}
		fs, err := projectKeys(configMapData(cm), v.ConfigMap.Items, "ConfigMap "+cm.Name)
		return fs, true, err
	case v.Projected != nil && hasToken(v.Projected):
		return nil, false, nil // a token from the API: the static pod has none
	case v.Projected != nil:
		var all []File
		for _, p := range v.Projected.Sources {
			var fs []File
			var err error
			switch {
			case p.Secret != nil:
				s, ok := src.Secrets[p.Secret.Name]
				if !ok {
					err = optional(p.Secret.Optional, "Secret", p.Secret.Name)
					break
				}
				fs, err = projectKeys(s.Data, p.Secret.Items, "Secret "+s.Name)
			case p.ConfigMap != nil:
				cm, ok := src.ConfigMaps[p.ConfigMap.Name]
				if !ok {
					err = optional(p.ConfigMap.Optional, "ConfigMap", p.ConfigMap.Name)
					break
				}
				fs, err = projectKeys(configMapData(cm), p.ConfigMap.Items, "ConfigMap "+cm.Name)
			default:
				err = fmt.Errorf("projected sources other than Secrets and ConfigMaps cannot be checkpointed")
			}
			if err != nil {
				return nil, false, err
			}
			all = append(all, fs...)
		}
		if all == nil {
			all = []File{}
		}
		return all, true, nil
	case v.HostPath != nil, v.EmptyDir != nil:
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("only hostPath, emptyDir, Secret, ConfigMap and projected volumes can be checkpointed")
}

// optional is the error for a missing source, or nil when the pod marks it optional.
func optional(opt *bool, kind, name string) error {
	if opt != nil && *opt {
		return nil
	}
	return fmt.Errorf("%s %q is not available", kind, name)
}

func configMapData(cm *corev1.ConfigMap) map[string][]byte {
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data
}

// projectKeys lays the keys of a Secret or ConfigMap out as the kubelet would: every key
// as a file of its name, or only the listed items at their paths.
func projectKeys(data map[string][]byte, items []corev1.KeyToPath, what string) ([]File, error) {
	fs := []File{} // not nil, also for no keys: nil means a volume of another kind
	if len(items) == 0 {
		for k, v := range data {
			fs = append(fs, File{Path: k, Data: v})
		}
		return fs, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		if path.IsAbs(it.Path) || strings.HasPrefix(path.Clean(it.Path), "..") {
			return nil, fmt.Errorf("%s: item path %q leaves the volume", what, it.Path)
		}
		fs = append(fs, File{Path: path.Clean(it.Path), Data: v})
	}
	return fs, nil
}

// sanitizeContainer resolves what a container would need the API for, and drops the
// mounts of dropped volumes.
func sanitizeContainer(c *corev1.Container, pod *corev1.Pod, src Sources, dropped map[string]bool) error {
	var mounts []corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if !dropped[m.Name] {
			mounts = append(mounts, m)
		}
	}
	c.VolumeMounts = mounts
	c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = nil, nil, nil
	if len(c.EnvFrom) > 0 {
		return fmt.Errorf("envFrom cannot be checkpointed; name the variables one by one")
	}
	for i := range c.Env {
		e := &c.Env[i]
		if e.ValueFrom == nil {
			continue
		}
		v, err := envValue(e.ValueFrom, pod, src)
		if err != nil {
			return fmt.Errorf("variable %s: %w", e.Name, err)
		}
		e.Value, e.ValueFrom = v, nil
	}
	return nil
}

func envValue(from *corev1.EnvVarSource, pod *corev1.Pod, src Sources) (string, error) {
	switch {
	case from.FieldRef != nil:
		switch from.FieldRef.FieldPath {
		case "status.hostIP", "status.podIP":
			if pod.Status.HostIP == "" || !pod.Spec.HostNetwork && from.FieldRef.FieldPath == "status.podIP" {
				return "", fmt.Errorf("%s is not known yet", from.FieldRef.FieldPath)
			}
			return pod.Status.HostIP, nil // host network: the pod's address is the node's
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "metadata.namespace":
			return pod.Namespace, nil
		}
		return "", fmt.Errorf("field %s cannot be checkpointed", from.FieldRef.FieldPath)
	case from.SecretKeyRef != nil:
		return "", fmt.Errorf("values from Secrets (here key %q of Secret %q) cannot be checkpointed: the static pod would carry the value, and its mirror pod would show it to everyone who can read pods; mount the Secret as a volume instead",
			from.SecretKeyRef.Key, from.SecretKeyRef.Name)
	case from.ConfigMapKeyRef != nil:
		cm, ok := src.ConfigMaps[from.ConfigMapKeyRef.Name]
		if !ok {
			return "", fmt.Errorf("ConfigMap %q is not available", from.ConfigMapKeyRef.Name)
		}
		v, ok := configMapData(cm)[from.ConfigMapKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("ConfigMap %q has no key %q", from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Key)
		}
		return string(v), nil
	}
	return "", fmt.Errorf("resource fields cannot be checkpointed")
}

// SourceNames lists the Secrets and ConfigMaps a pod needs, for fetching them. Secrets
// named only by environment variables are not listed: Sanitize refuses those.
func SourceNames(spec *corev1.PodSpec) (secrets, configMaps []string) {
	seenS, seenC := map[string]bool{}, map[string]bool{}
	addS := func(n string) {
		if n != "" && !seenS[n] {
			seenS[n] = true
			secrets = append(secrets, n)
		}
	}
	addC := func(n string) {
		if n != "" && !seenC[n] {
			seenC[n] = true
			configMaps = append(configMaps, n)
		}
	}
	for _, v := range spec.Volumes {
		switch {
		case v.Secret != nil:
			addS(v.Secret.SecretName)
		case v.ConfigMap != nil:
			addC(v.ConfigMap.Name)
		case v.Projected != nil && !hasToken(v.Projected):
			for _, p := range v.Projected.Sources {
				if p.Secret != nil {
					addS(p.Secret.Name)
				}
				if p.ConfigMap != nil {
					addC(p.ConfigMap.Name)
				}
			}
		}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					addC(e.ValueFrom.ConfigMapKeyRef.Name)
				}
			}
		}
	}
	return secrets, configMaps
}

func hasToken(p *corev1.ProjectedVolumeSource) bool {
	for _, s := range p.Sources {
		if s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}
