//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/operator"
	"github.com/selfkube/selfkube/test/e2e/framework"
	"github.com/selfkube/selfkube/test/e2e/probe"
)

// controlPlaneClient changes the ControlPlane resource as an administrator would, with
// the set-up client.
type controlPlaneClient struct {
	ctx context.Context
	dyn dynamic.Interface
}

func newControlPlaneClient(ctx context.Context, t *testing.T, cfg *rest.Config) *controlPlaneClient {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &controlPlaneClient{ctx: ctx, dyn: dyn}
}

func (c *controlPlaneClient) get(ctx context.Context) (*controlplane.ControlPlane, error) {
	u, err := c.dyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return controlplane.FromUnstructured(u)
}

// patch is `kubectl patch controlplane cluster --type merge -p p`; it returns the new
// generation.
func (c *controlPlaneClient) patch(t *testing.T, p string) int64 {
	t.Helper()
	u, err := c.dyn.Resource(controlplane.GroupVersionResource).Patch(c.ctx, controlplane.Name, types.MergePatchType, []byte(p), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("kubectl patch controlplane cluster --type merge -p '%s': %v", p, err)
	}
	return u.GetGeneration()
}

// settled waits until the operator has looked at generation gen and is done with it
// (Available, not Progressing), and returns the resource then.
func (c *controlPlaneClient) settled(t *testing.T, gen int64, what string) *controlplane.ControlPlane {
	t.Helper()
	var cp *controlplane.ControlPlane
	wait(c.ctx, t, 8*time.Minute, what, func(ctx context.Context) error {
		var err error
		if cp, err = c.get(ctx); err != nil {
			return err
		}
		p := meta.FindStatusCondition(cp.Status.Conditions, controlplane.ConditionProgressing)
		a := meta.FindStatusCondition(cp.Status.Conditions, controlplane.ConditionAvailable)
		if cp.Status.ObservedGeneration != gen || p == nil || p.Status != metav1.ConditionFalse || a == nil || a.Status != metav1.ConditionTrue {
			return fmt.Errorf("generation %d observed %d, conditions %+v", gen, cp.Status.ObservedGeneration, cp.Status.Conditions)
		}
		return nil
	})
	return cp
}

// controlPlaneScenarios changes the control plane of node n through its ControlPlane
// resource, as an administrator would (kubectl patch controlplane cluster), with the
// honest prober's targets measuring every change: a flag rolls out; a flag the apiserver
// does not know, and an image that does not exist, are rolled back automatically; a
// change made around the resource (an edit of the DaemonSet) is put back to the spec;
// and a cluster-wide `edit` user may not touch the resource. cfg is the set-up client's.
func controlPlaneScenarios(ctx context.Context, t *testing.T, cfg *rest.Config, cs kubernetes.Interface, n *framework.Node, bin string, targets []probe.Target) {
	cpc := newControlPlaneClient(ctx, t, cfg)
	patch, settled := cpc.patch, cpc.settled
	apiServerFlags := func(t *testing.T) []string {
		t.Helper()
		ds, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-apiserver", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ds.Spec.Template.Spec.Containers[0].Command
	}
	events := func(t *testing.T, reason string) []corev1.Event {
		t.Helper()
		evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=" + controlplane.Kind + ",reason=" + reason})
		if err != nil {
			t.Fatal(err)
		}
		return evs.Items
	}

	step(t, "ControlPlaneResourceMadeByInit", func(t *testing.T) {
		cp := settled(t, 1, "the operator to record the control plane init made as its last-known-good")
		var names []string
		for _, c := range cp.Status.Components {
			names = append(names, c.Name)
		}
		// Every component in skew order: etcd, the control plane, then the add-ons.
		want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns", "selfkube-network"}
		if cp.Status.LastKnownGood == nil || cp.Status.LastKnownGood.Generation != 1 || !slices.Equal(names, want) {
			t.Errorf("status after init: components %v (want %v), %+v", names, want, cp.Status)
		}
	})

	step(t, "UpgradePlan", func(t *testing.T) {
		// Read-only: what a change would do, and what blocks one.
		out, err := n.Exec(ctx, bin, "upgrade", "plan", "--set", "apiServer.extraArgs.max-requests-inflight=403")
		t.Logf("selfkube upgrade plan:\n%s", out)
		// (A "✗" may mark a version the plan lists but may not go to; the checks decide.)
		if err != nil || !strings.Contains(out, "max-requests-inflight: (unset) → 403") || !strings.Contains(out, "nothing blocks") {
			t.Errorf("upgrade plan of a good change: %v; want the change shown and nothing blocking", err)
		}
		out, err = n.Exec(ctx, bin, "upgrade", "plan", "--set", "kubernetesVersion=v1.38.0")
		t.Logf("selfkube upgrade plan (two minors up):\n%s", out)
		if err == nil || !strings.Contains(out, "✗") || !strings.Contains(out, "v1.37") {
			t.Errorf("upgrade plan of a skipped minor: %v; want it to fail, saying v1.37 comes first", err)
		}
		if cp, err := cpc.get(ctx); err != nil || cp.Generation != 1 {
			t.Errorf("upgrade plan changed the resource: generation %v, %v", cp, err)
		}
	})

	step(t, "FlagChangedThroughTheResource", func(t *testing.T) {
		var gen int64
		rep, informed := measureAvailability(ctx, t, cs, "controlplane-flag", targets, func() {
			// As an administrator on the node would: the command follows the roll-out.
			out, err := n.Exec(ctx, bin, "upgrade", "apply", "--set", "apiServer.extraArgs.max-requests-inflight=403")
			t.Logf("selfkube upgrade apply:\n%s", out)
			if err != nil {
				t.Fatalf("selfkube upgrade apply: %v", err)
			}
			for _, want := range []string{"apiServer.extraArgs.max-requests-inflight: (unset) → 403", "✓ rolling out kube-apiserver"} {
				if !strings.Contains(out, want) {
					t.Errorf("upgrade apply did not say %q", want)
				}
			}
			cp, err := cpc.get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			gen = cp.Generation
			settled(t, gen, "the flag change rolled out")
		})
		requireNoGap(t, rep, informed)
		if !slices.Contains(apiServerFlags(t), "--max-requests-inflight=403") {
			t.Errorf("the DaemonSet lacks the flag after the roll-out")
		}
		// A snapshot of etcd was taken before the change and is named in the status.
		cp, err := cpc.get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, cp, gen, map[string]*framework.Node{n.Name: n})
		if len(events(t, operator.ReasonRolledOut)) == 0 {
			t.Errorf("no %s Event on the ControlPlane", operator.ReasonRolledOut)
		}
	})

	// rolledBackComponent makes the bad change p (a --set of selfkube upgrade apply, or
	// a merge patch) and checks that component's failure rolled it back.
	rolledBackComponent := func(t *testing.T, scenario, p, component, wantReason string) {
		t.Helper()
		var gen int64
		var cp *controlplane.ControlPlane
		start := time.Now()
		rep, informed := measureAvailability(ctx, t, cs, scenario, targets, func() {
			if !strings.HasPrefix(p, "{") {
				// A --set of selfkube upgrade apply, which must fail and say why.
				out, err := n.Exec(ctx, bin, "upgrade", "apply", "--set", p)
				t.Logf("selfkube upgrade apply --set %s:\n%s", p, out)
				if err == nil || !strings.Contains(out, "rolled back") || !strings.Contains(out, wantReason) {
					t.Errorf("upgrade apply of a bad change: %v; want it to fail saying it was rolled back (%s)", err, wantReason)
				}
				c, err := cpc.get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				gen = c.Generation
			} else {
				gen = patch(t, p)
			}
			cp = settled(t, gen, "the bad change rolled back")
		})
		t.Logf("%s: rolled back and serving the last-known-good %.1f s after the change", scenario, time.Since(start).Seconds())
		requireNoGap(t, rep, informed)
		rb := meta.FindStatusCondition(cp.Status.Conditions, controlplane.ConditionRolledBack)
		if rb == nil || rb.Status != metav1.ConditionTrue || cp.Status.RolledBack == nil || cp.Status.RolledBack.Generation != gen ||
			cp.Status.RolledBack.Component != component || !strings.Contains(cp.Status.RolledBack.Reason+" "+rb.Reason, wantReason) {
			t.Errorf("status after the bad change: RolledBack %+v, %+v; want reason %s", rb, cp.Status.RolledBack, wantReason)
		}
		if cp.Status.LastKnownGood == nil || cp.Status.LastKnownGood.Generation >= gen {
			t.Errorf("the last-known-good moved to the bad generation: %+v", cp.Status.LastKnownGood)
		}
		warned := false
		for _, e := range events(t, operator.ReasonRolledBack) {
			warned = warned || e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, fmt.Sprintf("generation %d", gen))
		}
		if !warned {
			t.Errorf("no Warning %s Event names generation %d", operator.ReasonRolledBack, gen)
		}
	}

	rolledBack := func(t *testing.T, scenario, p, wantReason string) {
		t.Helper()
		rolledBackComponent(t, scenario, p, "kube-apiserver", wantReason)
	}

	step(t, "UnknownFlagRolledBack", func(t *testing.T) {
		rolledBack(t, "controlplane-bad-flag", "apiServer.extraArgs.no-such-flag=1", "CrashLoopBackOff")
		if slices.ContainsFunc(apiServerFlags(t), func(f string) bool { return strings.HasPrefix(f, "--no-such-flag") }) {
			t.Errorf("the DaemonSet still has --no-such-flag after the rollback")
		}
	})

	step(t, "MissingImageRolledBack", func(t *testing.T) {
		rolledBack(t, "controlplane-bad-image", `{"spec":{"apiServer":{"extraArgs":{"no-such-flag":null},"image":"registry.local/kube-apiserver:v0.0.0-missing"}}}`, "ImagePull")
	})

	step(t, "EditAroundTheResourcePutBack", func(t *testing.T) {
		// Back to a good spec first: the held, rolled-back generation changes nothing.
		gen := patch(t, `{"spec":{"apiServer":{"image":null}}}`)
		settled(t, gen, "the good spec rolled out")
		rep, informed := measureAvailability(ctx, t, cs, "controlplane-drift", targets, func() {
			addAPIServerFlag(ctx, t, cs, "--no-such-flag-either")
			wait(ctx, t, 5*time.Minute, "the operator to put the DaemonSet back to the spec", func(ctx context.Context) error {
				if slices.Contains(apiServerFlags(t), "--no-such-flag-either") {
					return fmt.Errorf("the edited flag is still in the DaemonSet")
				}
				return apiServerRolledOut(ctx, cs, 1, func(c corev1.Container) bool { return !slices.Contains(c.Command, "--no-such-flag-either") })
			})
		})
		requireNoGap(t, rep, informed)
	})

	step(t, "AddOnImageRolledBack", func(t *testing.T) {
		// The add-ons roll out after the control plane, with the same gates: CoreDNS on
		// an image that does not exist is rolled back, its old pods serving meanwhile.
		before, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rolledBackComponent(t, "controlplane-bad-coredns-image", "coreDNS.image=registry.local/coredns:v0.0.0-missing", "coredns", "ImagePull")
		wait(ctx, t, 2*time.Minute, "CoreDNS back on its image, every replica Ready", func(ctx context.Context) error {
			d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != before.Spec.Template.Spec.Containers[0].Image {
				return fmt.Errorf("image %s", img)
			}
			if d.Status.UpdatedReplicas != *d.Spec.Replicas || d.Status.ReadyReplicas != *d.Spec.Replicas || d.Status.Replicas != *d.Spec.Replicas {
				return fmt.Errorf("%d updated, %d ready, %d in all of %d", d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.Replicas, *d.Spec.Replicas)
			}
			return nil
		})
		// Back to a good spec for what follows.
		gen := patch(t, `{"spec":{"coreDNS":{"image":null}}}`)
		settled(t, gen, "the good spec rolled out")
	})

	step(t, "EditUsersCannotChangeTheControlPlane", func(t *testing.T) {
		// Changing the resource changes the apiserver's flags and image: it is
		// cluster-admin's alone, also against the aggregated `edit` and `admin` roles.
		const user = "e2e-editor"
		certPEM, keyPEM, err := userCertificate(n.HostPath("/var/lib/selfkube/assets/tls"), user)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{"edit", "admin"} {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
			}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		ucfg := &rest.Config{Host: cfg.Host, TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData, CertData: certPEM, KeyData: keyPEM}}
		udyn, err := dynamic.NewForConfig(ucfg)
		if err != nil {
			t.Fatal(err)
		}
		ucs, err := kubernetes.NewForConfig(ucfg)
		if err != nil {
			t.Fatal(err)
		}
		// The binding took effect: the user may do what `edit` allows.
		wait(ctx, t, 30*time.Second, "the editor's bindings", func(ctx context.Context) error {
			_, err := ucs.CoreV1().ConfigMaps(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{Limit: 1})
			return err
		})
		_, err = udyn.Resource(controlplane.GroupVersionResource).Patch(ctx, controlplane.Name, types.MergePatchType,
			[]byte(`{"spec":{"apiServer":{"extraArgs":{"authorization-mode":"AlwaysAllow"}}}}`), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("an edit/admin user patching the ControlPlane: %v, want Forbidden", err)
		}
		_, err = udyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("an edit/admin user reading the ControlPlane: %v, want Forbidden", err)
		}
		// The status carries the operator's word to the node agents (which etcd member
		// gets which flags): no more theirs than the spec.
		_, err = udyn.Resource(controlplane.GroupVersionResource).Patch(ctx, controlplane.Name, types.MergePatchType,
			[]byte(`{"status":{"etcd":{"member":{"node":"`+n.Name+`","generation":1,"target":"Spec","extraArgs":{"log-level":"debug"}}}}}`),
			metav1.PatchOptions{}, "status")
		if !apierrors.IsForbidden(err) {
			t.Errorf("an edit/admin user patching the ControlPlane's status: %v, want Forbidden", err)
		}
		// The node agent's ServiceAccount (a pod on a control-plane node that mounts its
		// token) may report in the status but not change the spec.
		sa := impersonate(cfg, "system:serviceaccount:kube-system:selfkube-checkpointer")
		sdyn, err := dynamic.NewForConfig(sa)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sdyn.Resource(controlplane.GroupVersionResource).Patch(ctx, controlplane.Name, types.MergePatchType,
			[]byte(`{"spec":{"etcd":{"extraArgs":{"log-level":"debug"}}}}`), metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("the node agent's ServiceAccount patching the ControlPlane's spec: %v, want Forbidden", err)
		}
	})
}

// operatorLeader is the pod that holds selfkube-controller's Lease.
func operatorLeader(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, manifests.ControllerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// killOperatorLeader deletes the leading selfkube-controller pod at once (no grace, so
// its Lease runs out instead of being handed back) and returns its name.
func killOperatorLeader(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	leader := operatorLeader(ctx, t, cs)
	if leader == "" {
		t.Fatal("no selfkube-controller replica leads")
	}
	err := cs.CoreV1().Pods("kube-system").Delete(ctx, leader, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil {
		t.Fatalf("deleting the leader %s: %v", leader, err)
	}
	t.Logf("killed the operator's leader %s at %s", leader, time.Now().Format("15:04:05.000"))
	return leader
}

// impersonate is cfg (an administrator's) acting as user, as `kubectl --as` does.
func impersonate(cfg *rest.Config, user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user}
	if strings.HasPrefix(user, "system:serviceaccount:") {
		ns := strings.Split(user, ":")[2]
		c.Impersonate.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	return c
}
