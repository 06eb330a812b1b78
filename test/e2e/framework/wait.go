package framework

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/node"
)

// Poll calls check every interval until it returns nil or ctx ends; the error then says
// what was awaited and what the last check saw.
func Poll(ctx context.Context, interval time.Duration, what string, check func(context.Context) error) error {
	timeout := 24 * time.Hour // ctx bounds the wait
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	return node.Poll(ctx, interval, timeout, "waiting for "+what, func(ctx context.Context) (bool, error) {
		if err := check(ctx); err != nil {
			return false, err
		}
		return true, nil
	})
}

// Readyz checks the apiserver's /readyz once.
func Readyz(ctx context.Context, cs kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz says %q", body)
	}
	return nil
}

// NodesReady checks once that exactly the named nodes exist and are Ready.
func NodesReady(ctx context.Context, cs kubernetes.Interface, names ...string) error {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	ready := map[string]bool{}
	var states []string
	for _, n := range nodes.Items {
		r := NodeReady(&n)
		ready[n.Name] = r
		states = append(states, fmt.Sprintf("%s ready=%v", n.Name, r))
	}
	sort.Strings(states)
	for _, name := range names {
		if !ready[name] {
			return fmt.Errorf("node %s is not Ready (nodes: %s)", name, strings.Join(states, ", "))
		}
	}
	return nil
}

// NodeReady and PodReady are the product's predicates, so the tests wait for what
// selfkube waits for: a node's Ready condition; a pod's Ready condition, a terminating
// pod counting as not Ready.
var (
	NodeReady = node.Ready
	PodReady  = node.PodReady
)

// Terminated reports whether a pod has finished for good (Succeeded or Failed, such as
// a pod the kubelet preempted to admit a critical one): its controller replaces it, and
// it stays in the API as history only.
func Terminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// PodsReady checks once that at least min pods match selector in namespace and all of them
// are Ready. Terminated pods are left out.
func PodsReady(ctx context.Context, cs kubernetes.Interface, namespace, selector string, min int) error {
	list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if !Terminated(&p) {
			pods = append(pods, p)
		}
	}
	var notReady []string
	for _, p := range pods {
		if !PodReady(&p) {
			notReady = append(notReady, fmt.Sprintf("%s on %s (%s)", p.Name, p.Spec.NodeName, p.Status.Phase))
		}
	}
	if len(notReady) > 0 {
		return fmt.Errorf("pods not Ready in %s: %s", namespace, strings.Join(notReady, ", "))
	}
	if len(pods) < min {
		return fmt.Errorf("%d pods in %s match %q, want at least %d", len(pods), namespace, selector, min)
	}
	return nil
}

// KubeSystemReady checks once that every kube-system pod is Ready, and that there are at
// least min of them.
func KubeSystemReady(ctx context.Context, cs kubernetes.Interface, min int) error {
	return PodsReady(ctx, cs, metav1.NamespaceSystem, "", min)
}
