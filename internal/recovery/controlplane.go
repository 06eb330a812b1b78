package recovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
)

// startEtcd puts etcd's static pod back as it was before the run and waits until the
// member answers with a leader (the only member, after a restore or a forced new cluster).
func startEtcd(ctx context.Context, d *Data) error {
	if d.Mode() == ControlPlane {
		return d.waitEtcd(ctx, 0)
	}
	// The very bytes set aside: a file the kubelet compares with what it ran.
	data, err := os.ReadFile(d.savedManifest())
	switch {
	case errors.Is(err, fs.ErrNotExist): // put back by an earlier run
	case err != nil:
		return err
	default:
		if _, err := host.WriteFile(d.etcdManifest(), data, 0o600); err != nil {
			return err
		}
	}
	if err := waitPort(ctx, d.Member.ClientURL, true, d.EtcdTimeout); err != nil {
		return err
	}
	if err := d.waitEtcd(ctx, 1); err != nil {
		return err
	}
	if err := d.Record.Disown(d.savedManifest()); err != nil {
		return err
	}
	if err := os.Remove(d.savedManifest()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return d.resumeStandIns()
}

// waitEtcd waits until the local member answers with a leader and, when members is not
// 0, lists that many members.
func (d *Data) waitEtcd(ctx context.Context, members int) error {
	pki := filepath.Join(d.Layout.PKIDir(), "etcd")
	var last error
	err := node.Poll(ctx, 500*time.Millisecond, d.EtcdTimeout, "etcd's member "+d.Member.Name+" at "+d.Member.ClientURL+" to answer with a leader",
		func(ctx context.Context) (bool, error) {
			c, err := etcd.Dial([]string{d.Member.ClientURL}, pki)
			if err != nil {
				return false, node.Terminal(err)
			}
			defer c.Close()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if last = c.Healthy(cctx, d.Member.ClientURL); last != nil {
				return false, last
			}
			if members == 0 {
				return true, nil
			}
			ms, err := c.Members(cctx)
			if err != nil {
				return false, err
			}
			if len(ms) != members {
				last = fmt.Errorf("etcd lists %d members, not %d", len(ms), members)
				return false, last
			}
			return true, nil
		})
	if err != nil && d.Mode() == ControlPlane {
		return fmt.Errorf("%w: if etcd lost its quorum for good (most of its members gone), run `selfkube recover --force-new-cluster`; if its data is lost, `selfkube recover --from-snapshot FILE`", err)
	}
	return err
}

// apiClient is an administrator's client of this node's API.
type apiClient struct {
	cfg *rest.Config
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

func (d *Data) client() (*apiClient, error) {
	if d.api != nil {
		return d.api, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", d.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading the administrator's kubeconfig %s (--kubeconfig): %w", d.Kubeconfig, err)
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	d.api = &apiClient{cfg: cfg, cs: cs, dyn: dyn}
	return d.api, nil
}

func (a *apiClient) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := a.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

// standInAfter is how long waitAPI waits for an apiserver before it activates the
// checkpoints: long enough for one that reconnects to a restarted etcd.
const standInAfter = 30 * time.Second

// waitAPI waits until the API answers /readyz. When it does not within standInAfter, it
// activates every checkpoint on disk that is not active (the kubelet runs them as static
// pods; the checkpointer retires them once the self-hosted pods are Ready again).
func waitAPI(ctx context.Context, d *Data) error {
	api, err := d.client()
	if err != nil {
		return err
	}
	wait := func(timeout time.Duration) error {
		return node.Poll(ctx, 500*time.Millisecond, timeout, "the API at "+api.cfg.Host+"/readyz",
			func(ctx context.Context) (bool, error) { err := api.ready(ctx); return err == nil, err })
	}
	if err := wait(min(standInAfter, d.APITimeout)); err == nil {
		return nil
	}
	store := checkpoint.Store{Dir: d.Layout.CheckpointsDir(), ManifestsDir: d.Layout.ManifestsDir()}
	names, err := store.Names()
	if err != nil {
		return err
	}
	unlock, err := store.Lock()
	if err != nil {
		return err
	}
	var activated []string
	for _, n := range names {
		if store.Active(n) {
			continue
		}
		if err := store.Activate(n); err != nil {
			unlock()
			return err
		}
		activated = append(activated, n)
	}
	unlock()
	if len(activated) > 0 {
		d.Record.Recovery.Activated = append(d.Record.Recovery.Activated, activated...)
		if err := d.Record.Save(); err != nil {
			return err
		}
		d.Status.Infof("no apiserver answered within %s: activated the checkpoints %s", standInAfter, strings.Join(activated, ", "))
	} else if !slices.Contains(names, "kube-apiserver") {
		return fmt.Errorf("no apiserver answers at %s and this node has no apiserver checkpoint in %s: "+
			"recover needs a control-plane node on which the checkpointer ran (`selfkube checkpointer list`)", api.cfg.Host, d.Layout.CheckpointsDir())
	}
	return wait(d.APITimeout)
}

// reapply creates each control-plane workload that is missing, rendered from the
// ControlPlane resource (its last-known-good spec, else its spec) and the cluster
// configuration, both read from the cluster: what the operator would render.
func reapply(ctx context.Context, d *Data) error {
	api, err := d.client()
	if err != nil {
		return err
	}
	u, err := api.dyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the ControlPlane %s: %w", controlplane.Name, err)
	}
	cp, err := controlplane.FromUnstructured(u)
	if err != nil {
		return err
	}
	cluster, err := manifests.ReadClusterConfig(ctx, api.cs)
	if err != nil {
		return err
	}
	spec := cp.Spec
	if lkg := cp.Status.LastKnownGood; lkg != nil {
		spec = lkg.Spec
	}
	members, err := etcdAddresses(ctx, api.cs, d.Member)
	if err != nil {
		return err
	}
	workloads, err := manifests.Workloads(spec.Configure(cluster), members)
	if err != nil {
		return err
	}
	applier := apply.NewFor(api.dyn, api.cs.Discovery())
	var created []string
	create := func(obj runtime.Object) error {
		did, err := applier.Create(ctx, obj)
		if err != nil {
			return err
		}
		if did {
			m, err := meta.Accessor(obj)
			if err != nil {
				return err
			}
			created = append(created, m.GetName()+" ("+obj.GetObjectKind().GroupVersionKind().Kind+")")
		}
		return nil
	}
	// A control-plane Secret deleted through the API comes back from this node's
	// checkpoint of its component, which keeps the files it mounts.
	for _, component := range []string{manifests.APIServer, manifests.ControllerManager, manifests.Scheduler} {
		_, err := api.cs.CoreV1().Secrets(manifests.Namespace).Get(ctx, component, metav1.GetOptions{})
		if err == nil {
			continue
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the Secret %s/%s: %w", manifests.Namespace, component, err)
		}
		data, err := d.checkpointedSecret(component)
		if err != nil {
			return fmt.Errorf("the Secret %s/%s is gone: %w", manifests.Namespace, component, err)
		}
		if err := create(manifests.ControlPlaneSecret(component, data)); err != nil {
			return err
		}
	}
	for _, name := range controlplane.Workloads {
		if obj, ok := workloads[name]; ok {
			if err := create(obj); err != nil {
				return err
			}
		}
	}
	// selfkube's own agents: without the controller nothing else would put a deleted
	// workload back, without the checkpointer no checkpoint would retire.
	for _, obj := range manifests.Agents(cluster, d.criSocket()) {
		if err := create(obj); err != nil {
			return err
		}
	}
	if len(created) > 0 {
		d.Status.Infof("created %s", strings.Join(created, ", "))
	} else {
		d.Status.Infof("none was missing")
	}
	return nil
}

// checkpointedSecret reads the files of component's Secret from this node's checkpoint of
// it (regular files only, by their key).
func (d *Data) checkpointedSecret(component string) (map[string][]byte, error) {
	store := checkpoint.Store{Dir: d.Layout.CheckpointsDir(), ManifestsDir: d.Layout.ManifestsDir()}
	dir, err := store.DirOf(component)
	if err != nil {
		return nil, err
	}
	dir = filepath.Join(dir, "volumes", manifests.SecretVolume)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	data := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		data[e.Name()] = b
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("this node has no checkpoint of %s with its files (%s): create the Secret again from a backup "+
			"(the asset directory of `selfkube render`/`init`), then run recover again", component, dir)
	}
	return data, nil
}

// criSocket is the container runtime endpoint of this node's kubelet (its configuration
// file), or the default.
func (d *Data) criSocket() string {
	var kc struct {
		ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint"`
	}
	if data, err := os.ReadFile(d.Layout.KubeletConfig()); err == nil && yaml.Unmarshal(data, &kc) == nil && kc.ContainerRuntimeEndpoint != "" {
		return kc.ContainerRuntimeEndpoint
	}
	return config.DefaultCRISocket
}

// etcdAddresses are the addresses of the etcd members the apiservers reach: those of
// the etcd mirror pods, or this node's member when there is none yet.
func etcdAddresses(ctx context.Context, cs kubernetes.Interface, self manifests.EtcdMember) ([]string, error) {
	pods, err := cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{manifests.EtcdLabelComponent: manifests.EtcdComponent}).String()})
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(m manifests.EtcdMember) {
		if h := hostOf(m.AdvertisedClientURL); h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	add(self)
	for i := range pods.Items {
		if m, err := manifests.EtcdMemberOf(&pods.Items[i]); err == nil {
			add(m)
		}
	}
	slices.Sort(out)
	return out, nil
}

// waitSelfHosted waits until the apiserver DaemonSet's pod on this node, a controller
// manager and a scheduler are Ready and no checkpoint is active on this node.
func waitSelfHosted(ctx context.Context, d *Data) error {
	api, err := d.client()
	if err != nil {
		return err
	}
	self := d.NodeName
	var last error
	err = node.Poll(ctx, time.Second, d.SelfHostedTimeout, "the self-hosted control plane", func(ctx context.Context) (bool, error) {
		last = selfHostedReady(ctx, api.cs, d.Layout.ManifestsDir(), self)
		return last == nil, last
	})
	if err != nil {
		return fmt.Errorf("%w (`kubectl -n kube-system get pods -o wide` and `kubectl -n kube-system describe pod selfkube-checkpointer-…` say more)", err)
	}
	return nil
}

// selfHostedReady checks once what waitSelfHosted waits for.
func selfHostedReady(ctx context.Context, cs kubernetes.Interface, manifestsDir, nodeName string) error {
	pods, err := cs.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if strings.HasPrefix(p.Name, "checkpoint-") || !node.PodReady(p) || len(p.OwnerReferences) == 0 {
			continue // checkpoints and mirror pods are not the self-hosted control plane
		}
		c := p.Labels["component"]
		if c == manifests.APIServer && nodeName != "" && p.Spec.NodeName != nodeName {
			continue
		}
		ready[c] = true
	}
	for _, c := range []string{manifests.APIServer, "kube-controller-manager", "kube-scheduler"} {
		if !ready[c] {
			return fmt.Errorf("no Ready self-hosted %s pod yet", c)
		}
	}
	entries, err := os.ReadDir(manifestsDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "checkpoint-") {
			return fmt.Errorf("the checkpoint %s still stands in", strings.TrimSuffix(e.Name(), ".yaml"))
		}
	}
	return nil
}

// copyTree copies the directory src to dst (regular files and directories, modes kept;
// etcd's data has nothing else), but the entries of src that skip names.
func copyTree(src, dst string, skip func(name string) bool) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if filepath.Dir(rel) == "." && rel != "." && skip != nil && skip(rel) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		to := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file", path)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// hostOf is the host of URL u, or "".
func hostOf(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return parsed.Hostname()
}

// NextSteps says what is left to do by hand after a run: after a restore or a forced
// new cluster, the other control-plane nodes join again.
func (d *Data) NextSteps(ctx context.Context) []string {
	if d.Mode() == ControlPlane {
		return nil
	}
	api, err := d.client()
	if err != nil {
		return nil
	}
	nodes, err := api.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: node.LabelControlPlane})
	if err != nil {
		return []string{fmt.Sprintf("(listing the control-plane nodes: %v)", err)}
	}
	var others []string
	for _, n := range nodes.Items {
		if n.Name != d.NodeName {
			others = append(others, n.Name)
		}
	}
	out := []string{fmt.Sprintf("etcd now has one member, %s.", d.Member.Name)}
	if len(others) == 0 {
		return append(out, "More control-plane nodes: selfkube token create --control-plane --print-join-command (here), then that command on the new node.")
	}
	return append(out,
		fmt.Sprintf("The control-plane nodes %s still hold the old cluster's etcd data: take each out of service before it starts again, then", strings.Join(others, ", ")),
		"  here:     kubectl delete node <node>; selfkube token create --control-plane --print-join-command",
		"  on it:    selfkube reset --force --remove-etcd-data, then the join command")
}
