package upgrade

// `selfkube upgrade node`: the host-managed part of an upgrade, the kubelet of this node.
// It runs after the control plane runs the new version (the kubelet may never be newer
// than the apiserver), replaces the kubelet binary, restarts the kubelet and waits for
// the node to report the new version, Ready; --drain moves the node's pods away first.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/status"
)

// NodeOptions say how `upgrade node` upgrades this node's kubelet.
type NodeOptions struct {
	// Node is this node's name.
	Node string
	// KubeletBinary is the new kubelet; its --version is the version upgraded to.
	KubeletBinary string
	// KubeletPath is where the kubelet the unit runs is installed.
	KubeletPath string
	// RestartCommand restarts the kubelet (a shell command).
	RestartCommand string
	// Drain evicts the node's pods (not DaemonSets' nor static pods) before, and makes
	// the node schedulable again after; it needs an administrator's credentials.
	Drain bool
	// DryRun says what would be done and does nothing.
	DryRun bool
	// Timeout bounds the drain and the wait for the node to come back.
	Timeout time.Duration
	// Out is where --dry-run says what it would do.
	Out io.Writer
}

// NodeClients are what `upgrade node` talks to: the API as the node (its kubelet's
// credentials) or as an administrator (Dyn set: the ControlPlane can be read, and the
// node drained).
type NodeClients struct {
	Client kubernetes.Interface
	Dyn    dynamic.Interface
}

// KubeletVersion is the version a kubelet binary says it is ("Kubernetes v1.36.3").
func KubeletVersion(ctx context.Context, binary string) (string, error) {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w (is it a kubelet binary for this machine?)", binary, err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "Kubernetes ")
	if !ok || !kubernetesVersionRE.MatchString(v) {
		return "", fmt.Errorf("%s --version printed %q, not a Kubernetes release", binary, strings.TrimSpace(string(out)))
	}
	return v, nil
}

// ControlPlaneAt says whether the control plane runs at least target, so that a kubelet
// of target may join it: never newer than the apiserver (Kubernetes' version-skew
// policy). apiserver is the version an apiserver answered /version with; cp, when the
// caller may read it, is the ControlPlane, whose spec must be at target or newer and
// rolled out on every node (its last-known-good is the spec's generation), since with
// several control-plane nodes one apiserver answering is not all of them. published is
// the version kube-system/kubeadm-config says (a node may read it; the operator writes
// it once a version ran healthy everywhere), the gate of a node that cannot read the
// ControlPlane; "" when there is none.
func ControlPlaneAt(target, apiserver, published string, cp *controlplane.ControlPlane) error {
	t, err := utilversion.ParseSemantic(target)
	if err != nil {
		return fmt.Errorf("kubelet version %q: %w", target, err)
	}
	a, err := utilversion.ParseSemantic(apiserver)
	if err != nil {
		return fmt.Errorf("the apiserver's version %q: %w", apiserver, err)
	}
	if a.LessThan(t) {
		return fmt.Errorf("the control plane runs %s, older than the kubelet %s (a kubelet may not be newer than the apiserver): "+
			"upgrade the control plane first, selfkube upgrade apply %s, and run this again once it is done", apiserver, target, target)
	}
	if cp == nil {
		if published == "" {
			return nil
		}
		p, err := utilversion.ParseSemantic(published)
		if err != nil {
			return fmt.Errorf("kubeadm-config's kubernetesVersion %q: %w", published, err)
		}
		if p.LessThan(t) {
			return fmt.Errorf("the control plane's roll-out of %s is not done everywhere (kubeadm-config says %s): "+
				"wait until kubectl get controlplane cluster says it is Available, then run this again", target, published)
		}
		return nil
	}
	s, err := utilversion.ParseSemantic(cp.Spec.KubernetesVersion)
	if err != nil {
		return fmt.Errorf("the ControlPlane's kubernetesVersion %q: %w", cp.Spec.KubernetesVersion, err)
	}
	if s.LessThan(t) {
		return fmt.Errorf("the ControlPlane asks for %s, older than the kubelet %s: selfkube upgrade apply %s first", cp.Spec.KubernetesVersion, target, target)
	}
	if lkg := cp.Status.LastKnownGood; lkg == nil || lkg.Generation != cp.Generation {
		return fmt.Errorf("the control plane is still rolling out generation %d (%s): wait until kubectl get controlplane cluster says it is Available, then run this again",
			cp.Generation, cp.Spec.KubernetesVersion)
	}
	return nil
}

// Node upgrades this node's kubelet (NodeOptions); it is a no-op, saying so, when the
// node runs that kubelet already.
func Node(ctx context.Context, c NodeClients, opts NodeOptions, st *status.Printer) (err error) {
	target, err := KubeletVersion(ctx, opts.KubeletBinary)
	if err != nil {
		return err
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, opts.Node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading node %s: %w (is --node-name this node's name?)", opts.Node, err)
	}
	if _, err := os.Stat(opts.KubeletPath); err != nil {
		return fmt.Errorf("no kubelet at %s (%v): pass --kubelet-path, the file the kubelet unit runs (systemctl cat kubelet)", opts.KubeletPath, err)
	}
	installed, _ := KubeletVersion(ctx, opts.KubeletPath)
	if n.Status.NodeInfo.KubeletVersion == target && installed == target {
		st.Start(fmt.Sprintf("node %s runs kubelet %s already: nothing to do", opts.Node, target)).End()
		return nil
	}
	step := st.Start(fmt.Sprintf("the control plane runs %s or newer", target))
	v, err := c.Client.Discovery().ServerVersion()
	if err == nil {
		var cp *controlplane.ControlPlane
		published := ""
		if c.Dyn != nil {
			cp, err = readControlPlane(ctx, c.Dyn)
		} else {
			published, err = publishedVersion(ctx, c.Client)
		}
		if err == nil {
			err = ControlPlaneAt(target, v.GitVersion, published, cp)
		}
	}
	step.Done(&err)
	if err != nil {
		return err
	}
	if opts.Drain && c.Dyn == nil {
		return errors.New("--drain needs an administrator's kubeconfig (--kubeconfig /etc/kubernetes/admin.conf): nothing was changed")
	}
	if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp {
		st.Infof("a new kubelet computes its static pods anew and may restart them once: this node's etcd member " +
			"(with one control-plane node, requests wait a few seconds for it)")
	}
	if opts.DryRun {
		if opts.Drain {
			fmt.Fprintf(opts.Out, "would cordon node %s and evict its pods\n", opts.Node)
		}
		fmt.Fprintf(opts.Out, "would install %s (kubelet %s) at %s, keeping the old one at %s.previous\n",
			opts.KubeletBinary, target, opts.KubeletPath, opts.KubeletPath)
		fmt.Fprintf(opts.Out, "would restart the kubelet (%s) and wait for node %s to say kubelet %s, Ready\n", opts.RestartCommand, opts.Node, target)
		return nil
	}
	if opts.Drain {
		if err := drain(ctx, c.Client, opts.Node, opts.Timeout, st); err != nil {
			return err
		}
	}
	if installed == target {
		// An earlier run installed it (and kept the one before as .previous): only the
		// restart and the wait are left.
		st.Start(fmt.Sprintf("kubelet %s is installed at %s already", target, opts.KubeletPath)).End()
	} else if err := install(opts, target, installed, st); err != nil {
		return err
	}
	step = st.Start("restarting the kubelet: " + opts.RestartCommand)
	if out, rerr := exec.CommandContext(ctx, "sh", "-c", opts.RestartCommand).CombinedOutput(); rerr != nil {
		err = fmt.Errorf("restarting the kubelet (%s): %w: %s; the new kubelet is installed, restart it by hand (the old one is at %s.previous)",
			opts.RestartCommand, rerr, strings.TrimSpace(string(out)), opts.KubeletPath)
	}
	step.Done(&err)
	if err != nil {
		return err
	}
	step = st.Start(fmt.Sprintf("node %s says kubelet %s, Ready", opts.Node, target))
	err = wait.PollUntilContextTimeout(ctx, time.Second, opts.Timeout, true, func(ctx context.Context) (bool, error) {
		n, gerr := c.Client.CoreV1().Nodes().Get(ctx, opts.Node, metav1.GetOptions{})
		if gerr != nil {
			return false, nil // the API may be a moment away through this node's proxy
		}
		return n.Status.NodeInfo.KubeletVersion == target && node.Ready(n), nil
	})
	if err != nil {
		err = fmt.Errorf("node %s did not report kubelet %s, Ready, within %s: see the kubelet's log (journalctl -u kubelet); "+
			"to go back, run this again with --kubelet-binary %s.previous", opts.Node, target, opts.Timeout, opts.KubeletPath)
		if opts.Drain {
			err = fmt.Errorf("%w (the node stays cordoned: kubectl uncordon %s once it is back)", err, opts.Node)
		}
	}
	step.Done(&err)
	if err != nil {
		return err
	}
	if opts.Drain {
		step = st.Start("uncordoning node " + opts.Node)
		err = node.Cordon(ctx, c.Client, opts.Node, false)
		step.Done(&err)
	}
	return err
}

func readControlPlane(ctx context.Context, dyn dynamic.Interface) (*controlplane.ControlPlane, error) {
	u, err := dyn.Resource(controlplane.GroupVersionResource).Get(ctx, controlplane.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the ControlPlane %s: %w", controlplane.Name, err)
	}
	return controlplane.FromUnstructured(u)
}

// install puts the new kubelet at KubeletPath: written beside it, synced and renamed
// over it (the running kubelet keeps its file), the old one kept as .previous.
func install(opts NodeOptions, target, installed string, st *status.Printer) (err error) {
	step := st.Start(fmt.Sprintf("installing kubelet %s at %s (was %s)", target, opts.KubeletPath, orUnknown(installed)))
	defer step.Done(&err)
	dir, base := filepath.Dir(opts.KubeletPath), filepath.Base(opts.KubeletPath)
	// The new binary first, to a temporary name (so that it may be the .previous one):
	// then the old one is linked as .previous (never rewritten in place), then the new
	// one renamed over it, then the directory synced.
	tmp := filepath.Join(dir, "."+base+".new")
	if err := copyFile(opts.KubeletBinary, tmp); err != nil {
		return fmt.Errorf("copying the new kubelet: %w", err)
	}
	prevTmp := filepath.Join(dir, "."+base+".previous")
	_ = os.Remove(prevTmp)
	if err := os.Link(opts.KubeletPath, prevTmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keeping the old kubelet: %w", err)
	}
	if err := os.Rename(prevTmp, opts.KubeletPath+".previous"); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keeping the old kubelet: %w", err)
	}
	if err := os.Rename(tmp, opts.KubeletPath); err != nil {
		return fmt.Errorf("installing the new kubelet: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// publishedVersion is the kubernetesVersion kube-system/kubeadm-config says ("" when
// the cluster has none).
func publishedVersion(ctx context.Context, client kubernetes.Interface) (string, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, manifests.KubeadmConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading kube-system/%s for the control plane's version: %w", manifests.KubeadmConfigName, err)
	}
	return manifests.KubeadmConfigVersion(cm)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_ = os.Remove(dst) // a file a killed run left
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
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
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// drain cordons node and evicts its pods, except DaemonSets' (they would come back),
// static pods (the kubelet's own) and the self-hosted control plane's (selfHosted),
// through the eviction API (PodDisruptionBudgets hold), and waits until they are gone.
func drain(ctx context.Context, client kubernetes.Interface, nodeName string, timeout time.Duration, st *status.Printer) (err error) {
	step := st.Start("draining node " + nodeName)
	defer step.Done(&err)
	if err := node.Cordon(ctx, client, nodeName, true); err != nil {
		return fmt.Errorf("cordoning node %s: %w", nodeName, err)
	}
	evictable := func() ([]corev1.Pod, error) {
		pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
		if err != nil {
			return nil, err
		}
		var out []corev1.Pod
		for _, p := range pods.Items {
			if owner := metav1.GetControllerOf(&p); owner != nil && (owner.Kind == "DaemonSet" || owner.Kind == "Node") {
				continue
			}
			if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			if selfHosted(&p) {
				continue
			}
			out = append(out, p)
		}
		return out, nil
	}
	pods, err := evictable()
	if err != nil {
		return fmt.Errorf("listing the pods of node %s: %w", nodeName, err)
	}
	var bare []string
	for _, p := range pods {
		if metav1.GetControllerOf(&p) == nil {
			bare = append(bare, p.Namespace+"/"+p.Name)
		}
	}
	if len(bare) > 0 {
		return fmt.Errorf("node %s runs pods no controller would make again, which an eviction would lose for good: %s; "+
			"move or delete them and run this again (the node stays cordoned: kubectl uncordon %s to undo)", nodeName, strings.Join(bare, ", "), nodeName)
	}
	var left []string
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := evictable()
		if err != nil {
			return false, nil
		}
		left = left[:0]
		for _, p := range pods {
			left = append(left, p.Namespace+"/"+p.Name)
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue
			}
			ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
			if err := client.PolicyV1().Evictions(p.Namespace).Evict(ctx, ev); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsTooManyRequests(err) {
				return false, fmt.Errorf("evicting %s/%s: %w", p.Namespace, p.Name, err)
			}
		}
		return len(pods) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("draining node %s: %v; still there: %s (a PodDisruptionBudget?); the node stays cordoned: "+
			"kubectl uncordon %s to undo", nodeName, err, strings.Join(left, ", "), nodeName)
	}
	return nil
}

// selfHosted says p is a pod of the self-hosted control plane that a drain leaves where
// it is: the controller manager, the scheduler and selfkube's operator. Evicted from the
// only control-plane node (they run on no other), nothing would start them again: no
// scheduler to place the new pods, no controller manager to make them. The kubelet's
// restart does not stop them.
func selfHosted(p *corev1.Pod) bool {
	if p.Namespace != metav1.NamespaceSystem {
		return false
	}
	switch p.Labels[manifests.LabelName] {
	case "kube-controller-manager", "kube-scheduler", manifests.ControllerName:
		return true
	}
	return false
}
