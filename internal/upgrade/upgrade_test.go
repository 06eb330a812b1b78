package upgrade

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/status"
)

func fakeCluster(t *testing.T, st controlplane.Status) *dynamicfake.FakeDynamicClient {
	t.Helper()
	cfg := configtest.Config(t, nil)
	cp := &controlplane.ControlPlane{ObjectMeta: metav1.ObjectMeta{Name: controlplane.Name, Generation: 1},
		Spec: controlplane.SpecFrom(&cfg.Cluster), Status: st}
	u, err := cp.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{controlplane.GroupVersionResource: controlplane.Kind + "List"}, u)
}

func read(t *testing.T, c *dynamicfake.FakeDynamicClient) *controlplane.ControlPlane {
	t.Helper()
	u, err := c.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestEditSetsTypedFieldsAndRefusesOthers(t *testing.T) {
	spec := map[string]any{"kubernetesVersion": "v1.36.3"}
	err := Edit(spec, []Change{
		{Path: "apiServer.extraArgs.v", Value: "2"},
		{Path: "scheduler.featureGates.A", Value: "true"},
		{Path: "rollout.soakSeconds", Value: "0"},
		{Path: "controllerManager.resources.limits.memory", Value: "1Gi"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(spec, "apiServer", "extraArgs", "v"); v != "2" {
		t.Errorf("extraArgs.v = %q", v)
	}
	if v, _, _ := unstructured.NestedBool(spec, "scheduler", "featureGates", "A"); !v {
		t.Errorf("featureGates.A not true")
	}
	if v, _, _ := unstructured.NestedInt64(spec, "rollout", "soakSeconds"); v != 0 {
		t.Errorf("soakSeconds = %d", v)
	}
	if err := Edit(spec, []Change{{Path: "apiServer.extraArgs.v", Unset: true}}); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := unstructured.NestedString(spec, "apiServer", "extraArgs", "v"); found {
		t.Errorf("--unset left the flag")
	}
	for _, bad := range []Change{
		{Path: "networking.podSubnet", Value: "10.0.0.0/8"},
		{Path: "rollout.soakSeconds", Value: "ten"},
		{Path: "apiServer.featureGates.A", Value: "yes please"},
		{Path: "apiServer", Value: "x"},
	} {
		if err := Edit(map[string]any{}, []Change{bad}); err == nil {
			t.Errorf("%s=%s was accepted", bad.Path, bad.Value)
		}
	}
}

func TestApplyRefusesAnInvalidChangeAndWritesNothing(t *testing.T) {
	c := fakeCluster(t, controlplane.Status{})
	_, err := Apply(context.Background(), c, Options{Changes: []Change{{Path: "kubernetesVersion", Value: "latest"}}}, status.New(&bytes.Buffer{}))
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), "kubernetesVersion") {
		t.Errorf("err = %v", err)
	}
	if cp := read(t, c); cp.Spec.KubernetesVersion == "latest" {
		t.Errorf("the invalid version was written")
	}
}

func TestDryRunShowsTheChangeAndWritesNothing(t *testing.T) {
	c := fakeCluster(t, controlplane.Status{})
	var out bytes.Buffer
	_, err := Apply(context.Background(), c, Options{DryRun: true, Changes: []Change{{Path: "apiServer.extraArgs.v", Value: "2"}}}, status.New(&out))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "apiServer.extraArgs.v: (unset) → 2") || !strings.Contains(out.String(), "dry run") {
		t.Errorf("output:\n%s", out.String())
	}
	if cp := read(t, c); len(cp.Spec.APIServer.ExtraArgs) != 0 {
		t.Errorf("a dry run wrote the spec")
	}
}

// setStatus plays the operator: it writes st as generation gen's status.
func setStatus(t *testing.T, c *dynamicfake.FakeDynamicClient, st controlplane.Status) {
	t.Helper()
	cp := read(t, c)
	cp.Status = st
	u, err := cp.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resource(controlplane.GroupVersionResource).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func progressing(gen int64, s metav1.ConditionStatus, reason string) []metav1.Condition {
	return []metav1.Condition{{Type: controlplane.ConditionProgressing, Status: s, Reason: reason, Message: reason, ObservedGeneration: gen}}
}

func TestFollowPrintsEachComponentAndTheOutcome(t *testing.T) {
	rolling := func(gen int64, component string, target controlplane.Target, more ...string) controlplane.Status {
		return controlplane.Status{ObservedGeneration: gen, Conditions: progressing(gen, metav1.ConditionTrue, "RollingOut"),
			Rollout: &controlplane.RolloutStatus{Generation: gen, Components: append([]string{component}, more...), Target: target}}
	}
	for name, tc := range map[string]struct {
		states  []controlplane.Status
		wantErr error
		want    []string
		notWant []string
	}{
		// A component that joins the stage under way is one step, named with everything
		// it rolled.
		"a stage that grows": {
			states: []controlplane.Status{rolling(1, "kube-apiserver", controlplane.TargetSpec),
				rolling(1, "kube-controller-manager", controlplane.TargetSpec, "kube-scheduler"),
				rolling(1, "kube-controller-manager", controlplane.TargetSpec, "kube-scheduler", "coredns"),
				{ObservedGeneration: 1, Conditions: progressing(1, metav1.ConditionFalse, "RolledOut"), LastKnownGood: &controlplane.Revision{Generation: 1}}},
			want:    []string{"✓ rolling out kube-apiserver (", "✓ rolling out kube-controller-manager, kube-scheduler, coredns ("},
			notWant: []string{"✓ rolling out kube-controller-manager, kube-scheduler ("},
		},
		"rolled out": {
			states: []controlplane.Status{rolling(1, "kube-apiserver", controlplane.TargetSpec), rolling(1, "kube-scheduler", controlplane.TargetSpec),
				{ObservedGeneration: 1, Conditions: progressing(1, metav1.ConditionFalse, "RolledOut"), LastKnownGood: &controlplane.Revision{Generation: 1}}},
			want: []string{"✓ rolling out kube-apiserver", "✓ rolling out kube-scheduler"},
		},
		"rolled back": {
			states: []controlplane.Status{rolling(1, "kube-apiserver", controlplane.TargetSpec), rolling(1, "kube-apiserver", controlplane.TargetLastKnownGood),
				{ObservedGeneration: 1, Conditions: progressing(1, metav1.ConditionFalse, "RolledBack"), LastKnownGood: &controlplane.Revision{Generation: 0},
					RolledBack: &controlplane.RolledBack{Generation: 1, Component: "kube-apiserver", Reason: "CrashLoopBackOff", Message: "exit 1"}}},
			wantErr: ErrRolledBack,
			want:    []string{"✗ rolling out kube-apiserver", "✓ rolling back kube-apiserver"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := fakeCluster(t, controlplane.Status{})
			var out bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- Follow(ctx, c, 1, Options{Poll: 5 * time.Millisecond, Timeout: 10 * time.Second}, status.New(&out))
			}()
			for _, st := range tc.states {
				time.Sleep(30 * time.Millisecond)
				setStatus(t, c, st)
			}
			err := <-done
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
			if tc.wantErr != nil && !strings.Contains(err.Error(), "CrashLoopBackOff") {
				t.Errorf("the error does not say what failed: %v", err)
			}
		})
	}
}

// `upgrade apply VERSION` is kubernetesVersion=VERSION; anything but a release such as
// v1.36.3 is refused before anything is read or changed.
func TestVersionChange(t *testing.T) {
	c, err := VersionChange("v1.36.3")
	if err != nil || c.Path != "kubernetesVersion" || c.Value != "v1.36.3" || c.Unset {
		t.Errorf("VersionChange(v1.36.3) = %+v, %v; want kubernetesVersion=v1.36.3", c, err)
	}
	for _, bad := range []string{"1.36.3", "v1.36", "latest", "v1.36.3 ", "v2.0.0"} {
		if _, err := VersionChange(bad); err == nil || !strings.Contains(err.Error(), "such as v1.36.3") {
			t.Errorf("VersionChange(%q) = %v, want a refusal naming the form", bad, err)
		}
	}
}
