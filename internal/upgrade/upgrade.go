// Package upgrade is `selfkube upgrade plan` (plan.go: what a change would do, and what
// blocks it) and `selfkube upgrade apply`: it changes the ControlPlane resource's spec
// field by field (--set, --unset), shows what changes, and follows the operator's
// roll-out to its end, one ✓/✗ line per component with its duration. What it does is
// what `kubectl patch controlplane cluster` does; it only saves the reading of the status.
package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/status"
)

// Change is one edit of the spec: a dotted path below spec (apiServer.extraArgs.v) and
// its value; Unset removes the field.
type Change struct {
	Path  string
	Value string
	Unset bool
}

// ParseSet reads a --set argument, FIELD=VALUE.
func ParseSet(arg string) (Change, error) {
	path, value, ok := strings.Cut(arg, "=")
	if !ok || path == "" {
		return Change{}, fmt.Errorf("--set %q: want FIELD=VALUE, such as apiServer.extraArgs.v=2", arg)
	}
	return Change{Path: path, Value: value}, nil
}

// VersionChange is the change of `upgrade apply VERSION`: kubernetesVersion=VERSION.
func VersionChange(v string) (Change, error) {
	if !kubernetesVersionRE.MatchString(v) {
		return Change{}, fmt.Errorf("%q is not a Kubernetes release: give one such as v1.36.3 (selfkube upgrade plan lists those with images on every node)", v)
	}
	return Change{Path: "kubernetesVersion", Value: v}, nil
}

var kubernetesVersionRE = regexp.MustCompile(`^v1\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// fieldKinds says what a path's value is; a path not matched is refused.
func fieldKind(path string) (string, error) {
	p := strings.Split(path, ".")
	component := func(s string) bool {
		return slices.Contains([]string{"apiServer", "controllerManager", "scheduler"}, s)
	}
	switch {
	case len(p) == 1 && (p[0] == "kubernetesVersion" || p[0] == "imageRepository"):
		return "string", nil
	case len(p) == 2 && p[0] == "rollout" && (p[1] == "timeoutSeconds" || p[1] == "soakSeconds"):
		return "int", nil
	case len(p) == 2 && component(p[0]) && p[1] == "image":
		return "string", nil
	case len(p) == 3 && component(p[0]) && p[1] == "extraArgs" && p[2] != "":
		return "string", nil
	case len(p) == 3 && component(p[0]) && p[1] == "featureGates" && p[2] != "":
		return "bool", nil
	case len(p) == 4 && component(p[0]) && p[1] == "resources" && (p[2] == "requests" || p[2] == "limits") && p[3] != "":
		return "string", nil
	case len(p) == 3 && p[0] == "etcd" && p[1] == "extraArgs" && p[2] != "":
		return "string", nil
	case len(p) == 2 && p[0] == "etcd" && p[1] == "version":
		return "string", nil
	case len(p) == 2 && (p[0] == "kubeProxy" || p[0] == "coreDNS") && p[1] == "image":
		return "string", nil
	}
	return "", fmt.Errorf("%s is not a field of the ControlPlane's spec: the fields are kubernetesVersion, imageRepository, "+
		"rollout.{timeoutSeconds,soakSeconds}, and for apiServer, controllerManager and scheduler: image, extraArgs.FLAG, "+
		"featureGates.GATE, resources.{requests,limits}.RESOURCE; etcd.version, etcd.extraArgs.FLAG; kubeProxy.image and coreDNS.image", path)
}

// Edit applies changes to spec (the unstructured spec of a ControlPlane) in place.
func Edit(spec map[string]any, changes []Change) error {
	var errs []error
	for _, c := range changes {
		kind, err := fieldKind(c.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fields := strings.Split(c.Path, ".")
		if c.Unset {
			unstructured.RemoveNestedField(spec, fields...)
			continue
		}
		var v any = c.Value
		switch kind {
		case "int":
			n, err := strconv.ParseInt(c.Value, 10, 32)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%s: not a whole number", c.Path, c.Value))
				continue
			}
			v = n
		case "bool":
			b, err := strconv.ParseBool(c.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%s: not true or false", c.Path, c.Value))
				continue
			}
			v = b
		}
		if err := unstructured.SetNestedField(spec, v, fields...); err != nil {
			errs = append(errs, fmt.Errorf("setting %s: %w", c.Path, err))
		}
	}
	return errors.Join(errs...)
}

// Options of Apply.
type Options struct {
	Changes []Change
	DryRun  bool
	// Timeout bounds the wait for the roll-out (or rollback) to end.
	Timeout time.Duration
	// Poll is how often the status is read (default 1 s).
	Poll time.Duration
}

// ErrRolledBack is returned when the operator rolled the change back.
var ErrRolledBack = errors.New("the change was rolled back")

// Apply edits the ControlPlane as opts says, prints the change, and unless DryRun
// follows the roll-out; the generation it made is returned. It changes nothing when a
// change is not valid or changes nothing.
func Apply(ctx context.Context, dyn dynamic.Interface, opts Options, st *status.Printer) (int64, error) {
	res := dyn.Resource(controlplane.GroupVersionResource)
	u, err := res.Get(ctx, controlplane.Name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading the ControlPlane %s: %w (was this cluster made by selfkube init?)", controlplane.Name, err)
	}
	before, err := controlplane.FromUnstructured(u)
	if err != nil {
		return 0, err
	}
	edited := u.DeepCopy()
	spec, _, _ := unstructured.NestedMap(edited.Object, "spec")
	if spec == nil {
		spec = map[string]any{}
	}
	if err := Edit(spec, opts.Changes); err != nil {
		return 0, fmt.Errorf("nothing was changed:\n%w", err)
	}
	if err := unstructured.SetNestedMap(edited.Object, spec, "spec"); err != nil {
		return 0, err
	}
	after, err := controlplane.FromUnstructured(edited)
	if err != nil {
		return 0, fmt.Errorf("nothing was changed: %w", err)
	}
	if errs := after.Spec.Validate(); len(errs) > 0 {
		return 0, fmt.Errorf("nothing was changed: %w", errs.ToAggregate())
	}
	diff, err := specDiff(before.Spec, after.Spec)
	if err != nil {
		return 0, err
	}
	if diff == "" {
		st.Infof("the spec already says that: nothing to change")
		return before.Generation, nil
	}
	st.Infof("the spec changes:\n%s", diff)
	if opts.DryRun {
		st.Infof("dry run: nothing was changed")
		return before.Generation, nil
	}
	// An update at the version read: a change made meanwhile by someone else is not lost.
	out, err := res.Update(ctx, edited, metav1.UpdateOptions{FieldManager: "selfkube-upgrade"})
	if err != nil {
		return 0, fmt.Errorf("changing the ControlPlane: %w", err)
	}
	gen := out.GetGeneration()
	st.Infof("generation %d written; the operator in selfkube-controller rolls it out", gen)
	return gen, Follow(ctx, dyn, gen, opts, st)
}

// Follow prints the roll-out of generation gen, one step per component, until the
// operator is done with it: nil when it rolled out, an error wrapping ErrRolledBack when
// it was rolled back (with what failed), or the last state on timeout.
func Follow(ctx context.Context, dyn dynamic.Interface, gen int64, opts Options, st *status.Printer) error {
	poll := opts.Poll
	if poll == 0 {
		poll = time.Second
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var step *status.Step
	var stepName, stepKey, last string
	for {
		u, err := dyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
		if err == nil {
			cp, err := controlplane.FromUnstructured(u)
			if err != nil {
				return err
			}
			if cp.Generation != gen {
				if step != nil {
					step.Fail()
				}
				return fmt.Errorf("the ControlPlane changed again meanwhile (generation %d): follow it with kubectl get controlplane -w", cp.Generation)
			}
			progressing := meta.FindStatusCondition(cp.Status.Conditions, controlplane.ConditionProgressing)
			if cp.Status.ObservedGeneration == gen && progressing != nil {
				last = progressing.Reason + ": " + progressing.Message
			}
			// One step per stage of the roll-out (or of the rollback): a component that
			// joins the stage under way renames its step.
			name, key := "", ""
			if r := cp.Status.Rollout; r != nil && r.Generation == gen && len(r.Components) > 0 {
				name = "rolling out " + strings.Join(r.Components, ", ")
				if r.Target == controlplane.TargetLastKnownGood {
					name = "rolling back " + strings.Join(r.Components, ", ")
				}
				key = fmt.Sprint(r.Target, controlplane.Stage(r.Components[0]), r.Drift)
			}
			if cp.Status.ObservedGeneration == gen && name != stepName && key != "" && key == stepKey {
				step.Rename(name)
				stepName = name
			}
			if cp.Status.ObservedGeneration == gen && name != stepName {
				if step != nil {
					if strings.HasPrefix(name, "rolling back") && !strings.HasPrefix(stepName, "rolling back") {
						step.Fail()
					} else {
						step.End()
					}
				}
				step, stepName, stepKey = nil, name, key
				if name != "" {
					step = st.Start(name)
				}
			}
			if dg := meta.FindStatusCondition(cp.Status.Conditions, controlplane.ConditionDegraded); cp.Status.ObservedGeneration == gen &&
				dg != nil && dg.Status == metav1.ConditionTrue && dg.ObservedGeneration == gen {
				if step != nil {
					step.Fail()
				}
				return fmt.Errorf("the control plane is degraded and cannot be rolled back: %s; "+
					"fix the spec or the node (kubectl describe controlplane %s)", dg.Message, controlplane.Name)
			}
			if cp.Status.ObservedGeneration == gen && progressing != nil && progressing.Status == metav1.ConditionFalse {
				if rb := cp.Status.RolledBack; rb != nil && rb.Generation == gen {
					return fmt.Errorf("%w: %s failed its health gate (%s: %s); the control plane runs generation %d again; "+
						"change the spec to go on (kubectl describe controlplane %s)", ErrRolledBack, rb.Component, rb.Reason, rb.Message,
						cp.Status.LastKnownGood.Generation, controlplane.Name)
				}
				if progressing.Reason == "InvalidSpec" {
					return errors.New(progressing.Message)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if step != nil {
				step.Fail()
			}
			return fmt.Errorf("the roll-out of generation %d did not end within %s (last: %s); it goes on: kubectl describe controlplane %s",
				gen, timeout, last, controlplane.Name)
		case <-time.After(poll):
		}
	}
}

// specDiff lists the fields that change, by dotted path: "- path: old" and
// "+ path: new".
func specDiff(before, after controlplane.Spec) (string, error) {
	a, err := flatten(before)
	if err != nil {
		return "", err
	}
	b, err := flatten(after)
	if err != nil {
		return "", err
	}
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	var out []string
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		old, hadOld := a[p]
		cur, hasCur := b[p]
		switch {
		case hadOld && hasCur && old == cur:
		case hadOld && hasCur:
			out = append(out, fmt.Sprintf("      %s: %s → %s", p, old, cur))
		case hadOld:
			out = append(out, fmt.Sprintf("      %s: %s → (unset)", p, old))
		default:
			out = append(out, fmt.Sprintf("      %s: (unset) → %s", p, cur))
		}
	}
	return strings.Join(out, "\n"), nil
}

// flatten turns a spec into its leaf values by dotted path.
func flatten(s controlplane.Spec) (map[string]string, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, c := range m {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, c)
			}
			return
		}
		out[prefix] = fmt.Sprint(v)
	}
	walk("", tree)
	return out, nil
}
