package upgrade

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/controlplane"
)

func TestSkewChecks(t *testing.T) {
	cp := func(v string) Kubelet { return Kubelet{Node: "cp1", Version: v, ControlPlane: true} }
	worker := func(v string) Kubelet { return Kubelet{Node: "w1", Version: v} }
	for name, tc := range map[string]struct {
		current, target string
		kubelets        []Kubelet
		version         Result
		kubeletResult   Result
		want            string // in one of the messages
	}{
		"stays":                      {"v1.36.3", "v1.36.3", []Kubelet{cp("v1.36.3")}, Pass, Pass, "stays v1.36.3"},
		"patch up":                   {"v1.36.3", "v1.36.5", []Kubelet{cp("v1.36.3")}, Pass, Pass, "a patch release within v1.36"},
		"patch down":                 {"v1.36.3", "v1.36.1", []Kubelet{cp("v1.36.3")}, Pass, Pass, "a patch release within v1.36"},
		"one minor up":               {"v1.36.3", "v1.37.0", []Kubelet{cp("v1.36.3"), worker("v1.34.0")}, Pass, Pass, "one minor version up"},
		"release candidate of next":  {"v1.36.3", "v1.37.0-rc.1", []Kubelet{cp("v1.36.3")}, Pass, Pass, "v1.36.3 → v1.37.0-rc.1: one minor version up"},
		"skips a minor":              {"v1.34.2", "v1.36.0", []Kubelet{cp("v1.34.2")}, Block, Pass, "v1.34.2 → v1.36.0 skips v1.35: go up one minor version at a time (v1.35 first)"},
		"skips two minors":           {"v1.34.2", "v1.37.0", []Kubelet{cp("v1.34.2")}, Block, Pass, "skips v1.35, v1.36"},
		"minor down":                 {"v1.36.3", "v1.35.9", []Kubelet{cp("v1.35.0")}, Block, Pass, "goes down a minor version"},
		"another major":              {"v1.36.3", "v2.0.0", []Kubelet{cp("v1.36.3")}, Block, Block, "a change of major version is not supported"},
		"not a version":              {"v1.36.3", "latest", []Kubelet{cp("v1.36.3")}, Block, Warn, `kubernetesVersion "latest" is not a version`},
		"kubelet a minor newer":      {"v1.36.3", "v1.36.3", []Kubelet{cp("v1.36.3"), worker("v1.37.0")}, Pass, Block, "node w1's kubelet v1.37.0 is newer than the control plane would be (v1.36.3)"},
		"kubelet newer by a patch":   {"v1.36.3", "v1.36.3", []Kubelet{cp("v1.36.5")}, Pass, Pass, "1 node (1 control-plane), v1.36.5"},
		"kubelet three minors older": {"v1.35.0", "v1.36.0", []Kubelet{cp("v1.36.0"), worker("v1.33.9")}, Pass, Pass, "2 nodes (1 control-plane), v1.33.9 to v1.36.0"},
		"kubelet four minors older":  {"v1.35.0", "v1.36.0", []Kubelet{cp("v1.36.0"), worker("v1.32.9")}, Pass, Block, "node w1's kubelet v1.32.9 is more than 3 minor versions older than v1.36.0"},
		"downgrade below a kubelet":  {"v1.36.3", "v1.36.1", []Kubelet{cp("v1.36.3")}, Pass, Pass, "none newer than v1.36.1"},
		"control-plane kubelet named": {"v1.35.0", "v1.36.0", []Kubelet{cp("v1.32.0")}, Pass, Block,
			"control-plane node cp1's kubelet v1.32.0 is more than 3 minor versions older"},
		"no nodes":           {"v1.36.3", "v1.37.0", nil, Pass, Warn, "no nodes found"},
		"kubelet unreadable": {"v1.36.3", "v1.36.3", []Kubelet{worker("")}, Pass, Warn, `node w1's kubelet version "" is not a version`},
	} {
		t.Run(name, func(t *testing.T) {
			version, kubelets := skewChecks(tc.current, tc.target, tc.kubelets)
			if version.Result != tc.version || kubelets.Result != tc.kubeletResult {
				t.Fatalf("version %s (%s), kubelets %s (%s); want %s, %s",
					version.Result, version.Message, kubelets.Result, kubelets.Message, tc.version, tc.kubeletResult)
			}
			if !strings.Contains(version.Message, tc.want) && !strings.Contains(kubelets.Message, tc.want) {
				t.Errorf("version: %q, kubelets: %q; want %q in one", version.Message, kubelets.Message, tc.want)
			}
		})
	}
}

// cluster is what the plan tests read, as client-go fakes serve it.
type cluster struct {
	cp         *controlplane.ControlPlane
	nodes      []*corev1.Node
	controller *appsv1.Deployment // nil: none
}

// healthyCluster is a one-control-plane-node cluster at v1.36.3 and a worker a minor
// behind, with generation 3 of the spec rolled out and two operator replicas ready.
func healthyCluster(t *testing.T) *cluster {
	t.Helper()
	spec := controlplane.SpecFrom(&configtest.Config(t, nil).Cluster)
	image := func(name string) string { return "registry.k8s.io/" + name + ":v1.36.3" }
	return &cluster{
		cp: &controlplane.ControlPlane{ObjectMeta: metav1.ObjectMeta{Name: controlplane.Name, Generation: 3}, Spec: spec,
			Status: controlplane.Status{
				ObservedGeneration: 3,
				Conditions: []metav1.Condition{
					{Type: controlplane.ConditionProgressing, Status: metav1.ConditionFalse, Reason: "RolledOut", Message: "generation 3 rolled out", ObservedGeneration: 3},
					{Type: controlplane.ConditionAvailable, Status: metav1.ConditionTrue, Reason: "AllComponentsHealthy", Message: "every component runs generation 3", ObservedGeneration: 3},
				},
				Components: []controlplane.ComponentStatus{
					{Name: "kube-apiserver", Image: image("kube-apiserver"), Updated: 1, Ready: 1, Desired: 1},
					{Name: "kube-controller-manager", Image: image("kube-controller-manager"), Updated: 1, Ready: 1, Desired: 1},
					{Name: "kube-scheduler", Image: image("kube-scheduler"), Updated: 1, Ready: 1, Desired: 1},
				},
				LastKnownGood: &controlplane.Revision{Generation: 3, Spec: spec},
			}},
		nodes: []*corev1.Node{
			{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
				Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.36.3"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "worker1"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.35.2"}}},
		},
		controller: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "selfkube-controller", Namespace: "kube-system"},
			Status: appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2}},
	}
}

// plan reads c through client-go fakes and plans changes; it fails the test when the
// plan wrote anything.
func (c *cluster) plan(t *testing.T, changes ...Change) *Plan {
	t.Helper()
	u, err := c.cp.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{controlplane.GroupVersionResource: controlplane.Kind + "List"}, u)
	published, err := yaml.Marshal(&configtest.Config(t, nil).Cluster)
	if err != nil {
		t.Fatal(err)
	}
	objects := []runtime.Object{&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "selfkube-config", Namespace: "kube-system"},
		Data: map[string]string{"ClusterConfiguration": string(published)}}}
	for _, n := range c.nodes {
		objects = append(objects, n)
	}
	if c.controller != nil {
		objects = append(objects, c.controller)
	}
	client := fake.NewClientset(objects...)

	obs, err := Read(context.Background(), client, dyn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanFor(obs, changes)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range append(dyn.Actions(), client.Actions()...) {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("the plan wrote: %s %s", a.GetVerb(), describe(a))
		}
	}
	return p
}

func describe(a k8stesting.Action) string {
	return a.GetResource().Resource + " in " + a.GetNamespace()
}

// check returns the plan's check of name, failing the test when there is none.
func check(t *testing.T, p *Plan, name string) Check {
	t.Helper()
	for _, c := range p.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s check in %+v", name, p.Checks)
	return Check{}
}

func ptr(s string) *string { return &s }

func TestPlanOfAValidChangeShowsItAndNothingBlocks(t *testing.T) {
	p := healthyCluster(t).plan(t, Change{Path: "apiServer.extraArgs.v", Value: "2"})
	if p.Blocked || p.Err() != nil {
		t.Fatalf("blocked: %v\n%s", p.Err(), p.Text())
	}
	if diff := cmp.Diff([]FieldChange{{Path: "apiServer.extraArgs.v", To: ptr("2")}}, p.Changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	want := `ControlPlane cluster: generation 3; last rolled out to every component: generation 3
the spec would change:
    apiServer.extraArgs.v: (unset) → 2
components:
    COMPONENT                RUNS                                             READY  WOULD RUN   SETTINGS
    kube-apiserver           registry.k8s.io/kube-apiserver:v1.36.3           1/1    (the same)  change
    kube-controller-manager  registry.k8s.io/kube-controller-manager:v1.36.3  1/1    (the same)  unchanged
    kube-scheduler           registry.k8s.io/kube-scheduler:v1.36.3           1/1    (the same)  unchanged
Versions with images on every node:
    (none besides the running one)
checks:
 ✓ spec: valid
 ✓ version: stays v1.36.3
 ✓ kubelets: 2 nodes (1 control-plane), v1.35.2 to v1.36.3: none newer than v1.36.3, none more than 3 minor versions older
 ✓ removed flags: no flag the target removes is set
 ✓ roll-out: generation 3 is rolled out; nothing in progress
 ✓ operator: kube-system/selfkube-controller: 2 of 2 replicas ready
nothing blocks: selfkube upgrade apply with the same --set and --unset makes the change
`
	if diff := cmp.Diff(want, p.Text()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
}

func TestPlanOfANewVersionShowsTheImages(t *testing.T) {
	p := healthyCluster(t).plan(t, Change{Path: "kubernetesVersion", Value: "v1.37.0"})
	if p.Blocked {
		t.Fatalf("blocked: %v", p.Err())
	}
	want := []ComponentPlan{
		{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.36.3", Ready: 1, Desired: 1, TargetImage: "registry.k8s.io/kube-apiserver:v1.37.0"},
		{Name: "kube-controller-manager", Image: "registry.k8s.io/kube-controller-manager:v1.36.3", Ready: 1, Desired: 1,
			TargetImage: "registry.k8s.io/kube-controller-manager:v1.37.0"},
		{Name: "kube-scheduler", Image: "registry.k8s.io/kube-scheduler:v1.36.3", Ready: 1, Desired: 1, TargetImage: "registry.k8s.io/kube-scheduler:v1.37.0"},
	}
	if diff := cmp.Diff(want, p.Components); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if c := check(t, p, "version"); c.Message != "v1.36.3 → v1.37.0: one minor version up" {
		t.Errorf("version: %+v", c)
	}
}

func TestPlanBlocks(t *testing.T) {
	for name, tc := range map[string]struct {
		change  func(*cluster)
		changes []Change
		check   string
		want    string
	}{
		"a flag with dashes": {changes: []Change{{Path: "apiServer.extraArgs.--v", Value: "2"}},
			check: "spec", want: "spec.apiServer.extraArgs[--v]"},
		"a field not in the spec": {changes: []Change{{Path: "networking.podSubnet", Value: "10.0.0.0/8"}},
			check: "spec", want: "networking.podSubnet is not a field of the ControlPlane's spec"},
		"a skipped minor": {changes: []Change{{Path: "kubernetesVersion", Value: "v1.38.0"}},
			check: "version", want: "v1.36.3 → v1.38.0 skips v1.37"},
		"a kubelet newer than the target": {
			change:  func(c *cluster) { c.nodes[1].Status.NodeInfo.KubeletVersion = "v1.37.1" },
			changes: []Change{{Path: "kubernetesVersion", Value: "v1.36.4"}},
			check:   "kubelets", want: "node worker1's kubelet v1.37.1 is newer than the control plane would be (v1.36.4)"},
		"a kubelet newer than the spec as it is": {
			change: func(c *cluster) { c.nodes[0].Status.NodeInfo.KubeletVersion = "v1.37.0" },
			check:  "kubelets", want: "control-plane node node1's kubelet v1.37.0 is newer"},
		"no operator replica ready": {
			change:  func(c *cluster) { c.controller.Status.ReadyReplicas = 0 },
			changes: []Change{{Path: "apiServer.extraArgs.v", Value: "2"}},
			check:   "operator", want: "no replica of kube-system/selfkube-controller is ready (0 of 2): nothing would roll the change out"},
		"a flag the target removes": {
			change: func(c *cluster) {
				c.cp.Spec.KubernetesVersion = "v1.32.4"
				c.cp.Spec.APIServer.ExtraArgs = map[string]string{"cloud-provider": "external"}
				c.cp.Status.LastKnownGood = &controlplane.Revision{Generation: 3, Spec: c.cp.Spec}
				c.nodes[0].Status.NodeInfo.KubeletVersion = "v1.32.4"
				c.nodes[1].Status.NodeInfo.KubeletVersion = "v1.32.4"
			},
			changes: []Change{{Path: "kubernetesVersion", Value: "v1.33.0"}},
			check:   "removed flags",
			want: "kube-apiserver has no --cloud-provider since v1.33 and would not start with it (apiServer.extraArgs.cloud-provider): " +
				"--unset apiServer.extraArgs.cloud-provider"},
		"an etcd minor version": {changes: []Change{{Path: "etcd.version", Value: "v3.7.0"}},
			check: "etcd version", want: "v3.6.6 → v3.7.0 changes etcd's minor version"},
		"no operator": {
			change:  func(c *cluster) { c.controller = nil },
			changes: []Change{{Path: "apiServer.extraArgs.v", Value: "2"}},
			check:   "operator", want: "does not exist: nothing would roll the change out"},
	} {
		t.Run(name, func(t *testing.T) {
			c := healthyCluster(t)
			if tc.change != nil {
				tc.change(c)
			}
			p := c.plan(t, tc.changes...)
			got := check(t, p, tc.check)
			if got.Result != Block || !strings.Contains(got.Message, tc.want) {
				t.Errorf("%s: %s %q, want block with %q", tc.check, got.Result, got.Message, tc.want)
			}
			if !p.Blocked {
				t.Errorf("not blocked")
			}
			if err := p.Err(); err == nil || !strings.Contains(err.Error(), tc.check+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v: it must say what blocks", err)
			}
			if !strings.Contains(p.Text(), " ✗ "+tc.check+": ") {
				t.Errorf("no ✗ line for %s:\n%s", tc.check, p.Text())
			}
			for _, other := range p.Checks {
				if other.Name != tc.check && other.Result == Block {
					t.Errorf("%s blocks too: %s", other.Name, other.Message)
				}
			}
		})
	}
}

func TestPlanWarnsOfTheRollOutState(t *testing.T) {
	for name, tc := range map[string]struct {
		status  func(*controlplane.ControlPlane)
		changes []Change
		want    []string // the roll-out warnings
	}{
		"a roll-out in progress": {
			status: func(cp *controlplane.ControlPlane) {
				cp.Generation, cp.Status.ObservedGeneration = 4, 4
				cp.Status.Rollout = &controlplane.RolloutStatus{Generation: 4, Components: []string{"kube-controller-manager"}, Target: controlplane.TargetSpec}
				cp.Status.Conditions[0] = metav1.Condition{Type: controlplane.ConditionProgressing, Status: metav1.ConditionTrue,
					Reason: "RollingOut", Message: "changing kube-controller-manager to generation 4", ObservedGeneration: 4}
			},
			changes: []Change{{Path: "apiServer.extraArgs.v", Value: "2"}},
			want:    []string{"a roll-out of generation 4 is in progress (kube-controller-manager); a new change replaces its target"},
		},
		"a spec the operator has not seen": {
			status: func(cp *controlplane.ControlPlane) { cp.Generation = 5 },
			want:   []string{"the operator has not seen the latest spec (generation 5; it last saw 3): is selfkube-controller running?"},
		},
		"degraded": {
			status: func(cp *controlplane.ControlPlane) {
				cp.Status.Conditions = append(cp.Status.Conditions, metav1.Condition{Type: controlplane.ConditionDegraded,
					Status: metav1.ConditionTrue, Reason: "CrashLoopBackOff", Message: "kube-scheduler is failing (CrashLoopBackOff: exit 1)"})
			},
			want: []string{"the control plane is degraded: kube-scheduler is failing (CrashLoopBackOff: exit 1)"},
		},
		"held after a rollback": {
			status: func(cp *controlplane.ControlPlane) {
				cp.Generation, cp.Status.ObservedGeneration = 4, 4
				cp.Status.RolledBack = &controlplane.RolledBack{Generation: 4, Component: "kube-apiserver", Reason: "CrashLoopBackOff", Message: "exit 1"}
				cp.Spec.APIServer.ExtraArgs = map[string]string{"no-such-flag": "1"}
			},
			changes: []Change{{Path: "apiServer.extraArgs.v", Value: "2"}},
			want: []string{"held at last-known-good generation 3: generation 4 was rolled back (kube-apiserver: CrashLoopBackOff: exit 1); " +
				"any change restarts the roll-out, of the whole spec: what failed in generation 4 is rolled out again unless this change undoes it"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := healthyCluster(t)
			tc.status(c.cp)
			p := c.plan(t, tc.changes...)
			var got []string
			for _, ch := range p.Checks {
				if ch.Name == "roll-out" {
					if ch.Result != Warn {
						t.Errorf("roll-out %s: %s", ch.Result, ch.Message)
					}
					got = append(got, ch.Message)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("roll-out warnings (-want +got):\n%s", diff)
			}
			if p.Blocked {
				t.Errorf("a warning blocked: %v", p.Err())
			}
		})
	}
}

// Without changes the plan is of the spec as it is: what of it has not rolled out.
func TestPlanOfTheSpecAsItIs(t *testing.T) {
	c := healthyCluster(t)
	c.cp.Generation, c.cp.Status.ObservedGeneration = 4, 4
	c.cp.Status.RolledBack = &controlplane.RolledBack{Generation: 4, Component: "kube-apiserver", Reason: "CrashLoopBackOff", Message: "exit 1"}
	c.cp.Spec.APIServer.ExtraArgs = map[string]string{"no-such-flag": "1"}
	p := c.plan(t)
	if diff := cmp.Diff([]FieldChange{{Path: "apiServer.extraArgs.no-such-flag", To: ptr("1")}}, p.Changes); diff != "" {
		t.Errorf("changes from the last-known-good spec (-want +got):\n%s", diff)
	}
	for _, want := range []string{
		"the spec differs from generation 3's, which ran healthy, in:\n    apiServer.extraArgs.no-such-flag: (unset) → 1\n",
		" ! roll-out: held at last-known-good generation 3: generation 4 was rolled back (kube-apiserver: CrashLoopBackOff: exit 1); change the spec to go on\n",
	} {
		if !strings.Contains(p.Text(), want) {
			t.Errorf("text lacks %q:\n%s", want, p.Text())
		}
	}
	if p.Blocked || p.Err() != nil {
		t.Errorf("blocked: %v", p.Err())
	}
}

func TestPlanJSON(t *testing.T) {
	c := healthyCluster(t)
	c.controller.Status.ReadyReplicas = 0
	raw, err := json.Marshal(c.plan(t, Change{Path: "apiServer.extraArgs.v", Value: "2"}))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Changes    []map[string]string
		Components []map[string]any
		Checks     []struct{ Name, Result, Message string }
		Blocked    bool
	}
	for _, empty := range []string{`"available":[]`, `"availableEtcd":[]`} {
		if !strings.Contains(string(raw), empty) {
			t.Errorf("json lacks %s: %s", empty, raw)
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Blocked || len(got.Changes) != 1 || got.Changes[0]["path"] != "apiServer.extraArgs.v" || got.Changes[0]["to"] != "2" ||
		len(got.Components) != 3 || got.Components[0]["targetImage"] != "registry.k8s.io/kube-apiserver:v1.36.3" {
		t.Errorf("json: %s", raw)
	}
	results := map[string]string{}
	for _, c := range got.Checks {
		results[c.Name] = c.Result
	}
	want := map[string]string{"spec": "pass", "version": "pass", "kubelets": "pass", "removed flags": "pass", "roll-out": "pass", "operator": "block"}
	if diff := cmp.Diff(want, results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

func TestPlanOfNoControlPlaneAsksAboutInit(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{controlplane.GroupVersionResource: controlplane.Kind + "List"})
	_, err := Read(context.Background(), fake.NewClientset(), dyn)
	if err == nil || !strings.Contains(err.Error(), "(was this cluster made by selfkube init?)") {
		t.Errorf("err = %v", err)
	}
}

// kubernetesImages are the images of Kubernetes version tag (registry.k8s.io) that a
// control-plane node needs.
func kubernetesImages(tag string) []string {
	return []string{"registry.k8s.io/kube-apiserver:" + tag, "registry.k8s.io/kube-controller-manager:" + tag,
		"registry.k8s.io/kube-scheduler:" + tag, "registry.k8s.io/kube-proxy:" + tag}
}

// withImages lists refs among n's images the way a kubelet does: each image by digest
// and by tag.
func withImages(n *corev1.Node, refs ...string) {
	for i, ref := range refs {
		name := ref[:strings.LastIndex(ref, ":")]
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names: []string{name + "@sha256:" + strings.Repeat(string(rune('a'+i%26)), 64), ref}, SizeBytes: 100 << 20})
	}
}

// addControlPlaneNode adds a second control-plane node, node2, at v1.36.3.
func (c *cluster) addControlPlaneNode(refs ...string) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.36.3"}}}
	withImages(n, refs...)
	c.nodes = append(c.nodes, n)
}

func TestPlanListsTheVersionsWithImagesOnEveryNode(t *testing.T) {
	for name, tc := range map[string]struct {
		images   func(c *cluster) // node1 is the control-plane node, worker1 a worker
		changes  []Change
		want     []AvailableVersion
		wantEtcd []string
	}{
		"none": {
			images: func(c *cluster) { withImages(c.nodes[0], kubernetesImages("v1.36.3")...) },
			want:   []AvailableVersion{}, wantEtcd: []string{}},
		"one minor up, on every node": {
			images: func(c *cluster) {
				withImages(c.nodes[0], kubernetesImages("v1.37.0")...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0")
			},
			want: []AvailableVersion{{Version: "v1.37.0", Allowed: true}}, wantEtcd: []string{}},
		"missing on one control-plane node": {
			images: func(c *cluster) {
				withImages(c.nodes[0], kubernetesImages("v1.37.0")...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0")
				c.addControlPlaneNode("registry.k8s.io/kube-apiserver:v1.37.0", "registry.k8s.io/kube-controller-manager:v1.37.0",
					"registry.k8s.io/kube-proxy:v1.37.0") // no kube-scheduler
			},
			want: []AvailableVersion{}, wantEtcd: []string{}},
		"kube-proxy missing on a worker": {
			images: func(c *cluster) { withImages(c.nodes[0], kubernetesImages("v1.37.0")...) },
			want:   []AvailableVersion{}, wantEtcd: []string{}},
		"two minors up": {
			images: func(c *cluster) {
				withImages(c.nodes[0], kubernetesImages("v1.38.0")...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.38.0")
			},
			want: []AvailableVersion{{Version: "v1.38.0", Allowed: false,
				Reason: "v1.36.3 → v1.38.0 skips v1.37: go up one minor version at a time (v1.37 first)"}},
			wantEtcd: []string{}},
		"a kubelet too old for it": {
			images: func(c *cluster) {
				c.nodes[1].Status.NodeInfo.KubeletVersion = "v1.33.1"
				withImages(c.nodes[0], append(kubernetesImages("v1.37.0"), kubernetesImages("v1.36.5")...)...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0", "registry.k8s.io/kube-proxy:v1.36.5")
			},
			want: []AvailableVersion{{Version: "v1.36.5", Allowed: true}, {Version: "v1.37.0", Allowed: false,
				Reason: "node worker1's kubelet v1.33.1 is more than 3 minor versions older than v1.37.0: upgrade that kubelet first"}},
			wantEtcd: []string{}},
		"by semantic version, the running one left out": {
			images: func(c *cluster) {
				for _, tag := range []string{"v1.37.0", "v1.36.10", "v1.36.3", "v1.36.9", "v1.35.4", "v1.37.0-rc.1"} {
					withImages(c.nodes[0], kubernetesImages(tag)...)
					withImages(c.nodes[1], "registry.k8s.io/kube-proxy:"+tag)
				}
			},
			want: []AvailableVersion{
				{Version: "v1.35.4", Allowed: false, Reason: "v1.36.3 → v1.35.4 goes down a minor version, which Kubernetes does not support " +
					"(objects stored by v1.36 may not read back); stay on v1.36; control-plane node node1's kubelet v1.36.3 is newer than " +
					"the control plane would be (v1.35.4); a kubelet may not be newer than kube-apiserver"},
				{Version: "v1.36.9", Allowed: true},
				{Version: "v1.36.10", Allowed: true},
				{Version: "v1.37.0-rc.1", Allowed: true},
				{Version: "v1.37.0", Allowed: true},
			},
			wantEtcd: []string{}},
		"only by digest": {
			images: func(c *cluster) {
				for _, n := range c.nodes {
					n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.k8s.io/kube-apiserver@sha256:" + strings.Repeat("a", 64)}}}
				}
			},
			want: []AvailableVersion{}, wantEtcd: []string{}},
		"in another repository": {
			images: func(c *cluster) {
				withImages(c.nodes[0], "registry.local/kube-apiserver:v1.37.0", "registry.local/kube-controller-manager:v1.37.0",
					"registry.local/kube-scheduler:v1.37.0", "registry.local/kube-proxy:v1.37.0")
				withImages(c.nodes[1], "registry.local/kube-proxy:v1.37.0")
			},
			want: []AvailableVersion{}, wantEtcd: []string{}},
		"in the repository the change sets": {
			images: func(c *cluster) {
				withImages(c.nodes[0], "registry.local/kube-apiserver:v1.37.0", "registry.local/kube-controller-manager:v1.37.0",
					"registry.local/kube-scheduler:v1.37.0", "registry.local/kube-proxy:v1.37.0", "registry.local/etcd:3.6.16-0")
				withImages(c.nodes[1], "registry.local/kube-proxy:v1.37.0")
			},
			changes: []Change{{Path: "imageRepository", Value: "registry.local"}},
			want:    []AvailableVersion{{Version: "v1.37.0", Allowed: true}}, wantEtcd: []string{"v3.6.16"}},
		"no node labelled control-plane: every node needs them": {
			images: func(c *cluster) {
				delete(c.nodes[0].Labels, "node-role.kubernetes.io/control-plane")
				withImages(c.nodes[0], kubernetesImages("v1.37.0")...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0")
			},
			want: []AvailableVersion{}, wantEtcd: []string{}},
		"etcd releases, either tag form, the running one left out": {
			images: func(c *cluster) {
				withImages(c.nodes[0], "registry.k8s.io/etcd:3.6.6-0", "registry.k8s.io/etcd:3.6.16-0", "registry.k8s.io/etcd:v3.6.20",
					"registry.k8s.io/etcd:3.6.9-0", "registry.k8s.io/etcd:3.6.16-1", "registry.k8s.io/etcd:3.5.21-0",
					"registry.k8s.io/etcd:latest", "quay.io/coreos/etcd:v3.6.30")
			},
			want: []AvailableVersion{}, wantEtcd: []string{"v3.5.21", "v3.6.9", "v3.6.16", "v3.6.20"}},
		"etcd on one control-plane node only": {
			images: func(c *cluster) {
				withImages(c.nodes[0], "registry.k8s.io/etcd:3.6.16-0", "registry.k8s.io/etcd:3.6.20-0")
				c.addControlPlaneNode("registry.k8s.io/etcd:v3.6.20")
			},
			want: []AvailableVersion{}, wantEtcd: []string{"v3.6.20"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := healthyCluster(t)
			tc.images(c)
			p := c.plan(t, tc.changes...)
			if diff := cmp.Diff(tc.want, p.Available); diff != "" {
				t.Errorf("available (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEtcd, p.AvailableEtcd); diff != "" {
				t.Errorf("available etcd (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanTextListsTheVersionsWithImages(t *testing.T) {
	c := healthyCluster(t)
	withImages(c.nodes[0], append(kubernetesImages("v1.37.0"), append(kubernetesImages("v1.38.0"), "registry.k8s.io/etcd:3.6.16-0")...)...)
	withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0", "registry.k8s.io/kube-proxy:v1.38.0")
	want := `Versions with images on every node:
    ✓ v1.37.0
    ✗ v1.38.0: v1.36.3 → v1.38.0 skips v1.37: go up one minor version at a time (v1.37 first)
    etcd: v3.6.16
checks:
`
	if text := c.plan(t).Text(); !strings.Contains(text, want) {
		t.Errorf("text lacks\n%s\nin:\n%s", want, text)
	}
}

func TestPlanOfANewVersionChecksTheImages(t *testing.T) {
	// CoreDNS of v1.37 (selfkube's pinned one for releases newer than its table), which
	// may be scheduled on any node.
	const coreDNS = "registry.k8s.io/coredns/coredns:v1.15.0"
	for name, tc := range map[string]struct {
		images  func(c *cluster)
		changes []Change
		want    *Check // nil: no images check
	}{
		"on every node": {
			images: func(c *cluster) {
				withImages(c.nodes[0], append(kubernetesImages("v1.37.0"), coreDNS)...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0", coreDNS)
			},
			changes: []Change{{Path: "kubernetesVersion", Value: "v1.37.0"}},
			want:    &Check{Name: "images", Result: Pass, Message: "every node has the images of v1.37.0"}},
		"CoreDNS missing on a worker": {
			images: func(c *cluster) {
				withImages(c.nodes[0], append(kubernetesImages("v1.37.0"), coreDNS)...)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0")
			},
			changes: []Change{{Path: "kubernetesVersion", Value: "v1.37.0"}},
			want: &Check{Name: "images", Result: Warn, Message: "node worker1 lacks " + coreDNS + ": the kubelet pulls what its node lacks when the roll-out reaches it, " +
				"if it can reach the registry (a kubelet lists only its 50 largest images by default: the image may be there)"}},
		"missing on a control-plane node and a worker": {
			images: func(c *cluster) {
				withImages(c.nodes[0], append(kubernetesImages("v1.37.0"), coreDNS)...)
				withImages(c.nodes[1], coreDNS)
				c.addControlPlaneNode("registry.k8s.io/kube-controller-manager:v1.37.0", "registry.k8s.io/kube-scheduler:v1.37.0",
					"registry.k8s.io/kube-proxy:v1.37.0", coreDNS)
			},
			changes: []Change{{Path: "kubernetesVersion", Value: "v1.37.0"}},
			want: &Check{Name: "images", Result: Warn, Message: "control-plane node node2 lacks registry.k8s.io/kube-apiserver:v1.37.0; " +
				"node worker1 lacks registry.k8s.io/kube-proxy:v1.37.0: the kubelet pulls what its node lacks when the roll-out reaches it, " +
				"if it can reach the registry (a kubelet lists only its 50 largest images by default: the image may be there)"}},
		"of the image the spec sets": {
			images: func(c *cluster) {
				withImages(c.nodes[0], "registry.local/apiserver:custom", "registry.k8s.io/kube-controller-manager:v1.37.0",
					"registry.k8s.io/kube-scheduler:v1.37.0", "registry.k8s.io/kube-proxy:v1.37.0", coreDNS)
				withImages(c.nodes[1], "registry.k8s.io/kube-proxy:v1.37.0", coreDNS)
			},
			changes: []Change{{Path: "kubernetesVersion", Value: "v1.37.0"}, {Path: "apiServer.image", Value: "registry.local/apiserver:custom"}},
			want:    &Check{Name: "images", Result: Pass, Message: "every node has the images of v1.37.0"}},
		"no change of version": {
			images:  func(c *cluster) {},
			changes: []Change{{Path: "apiServer.extraArgs.v", Value: "2"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := healthyCluster(t)
			tc.images(c)
			p := c.plan(t, tc.changes...)
			var got *Check
			for _, ch := range p.Checks {
				if ch.Name == "images" {
					got = &ch
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("images check (-want +got):\n%s", diff)
			}
			if p.Blocked {
				t.Errorf("blocked: %v", p.Err())
			}
		})
	}
}

// An etcd patch release passes, saying it goes member by member, and blocks nothing.
func TestPlanEtcdPatchVersion(t *testing.T) {
	p := healthyCluster(t).plan(t, Change{Path: "etcd.version", Value: "v3.6.16"})
	var got *Check
	for i := range p.Checks {
		if p.Checks[i].Name == "etcd version" {
			got = &p.Checks[i]
		}
	}
	if got == nil || got.Result != Pass || got.Message != "v3.6.6 → v3.6.16, one member at a time" || p.Blocked {
		t.Errorf("etcd v3.6.6 → v3.6.16: check %+v, blocked %v; want a pass, nothing blocked", got, p.Blocked)
	}
}
