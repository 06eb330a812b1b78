//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// The test workload: busybox httpd on every node answering with its hostname (the pod
// name), behind a ClusterIP Service; short-lived probe pods make requests from a node.
const (
	busyboxImage = "registry.local/busybox:latest"
	webName      = "web"
	webPort      = 8080
)

var allTaints = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}

func webDaemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"app": webName}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: webName, Namespace: metav1.NamespaceDefault},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Tolerations:                   allTaints,
					TerminationGracePeriodSeconds: new(int64),
					Containers:                    []corev1.Container{webContainer()},
				},
			},
		},
	}
}

// webContainer serves its pod's hostname over HTTP on webPort, Ready once it listens.
func webContainer() corev1.Container {
	return corev1.Container{
		Name:            "httpd",
		Image:           busyboxImage,
		ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", fmt.Sprintf(
			"mkdir -p /www && hostname > /www/index.html && exec httpd -f -p %d -h /www", webPort)},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(webPort)}},
			PeriodSeconds: 1,
		},
	}
}

func webService() *corev1.Service { return webServiceFor(webName) }

// webServiceFor is the port-80 Service of the webContainer pods labelled app=app.
func webServiceFor(app string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: metav1.NamespaceDefault},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(webPort)}},
		},
	}
}

// webPods returns the web pods by node name, once there is a Ready one on every node.
func webPods(ctx context.Context, cs kubernetes.Interface, nodes []string) (map[string]corev1.Pod, error) {
	byNode := map[string]corev1.Pod{}
	err := framework.Poll(ctx, time.Second, "a Ready web pod on every node", func(ctx context.Context) error {
		pods, err := cs.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "app=" + webName})
		if err != nil {
			return err
		}
		byNode = map[string]corev1.Pod{}
		for _, p := range pods.Items {
			if framework.PodReady(&p) && p.DeletionTimestamp == nil {
				byNode[p.Spec.NodeName] = p
			}
		}
		for _, n := range nodes {
			if _, ok := byNode[n]; !ok {
				return fmt.Errorf("no Ready web pod on %s (Ready on: %v)", n, keys(byNode))
			}
		}
		return nil
	})
	return byNode, err
}

var probeCount int

// probePod runs script in a busybox pod on node and returns its output; the pod must exit 0.
func probePod(ctx context.Context, t *testing.T, cs kubernetes.Interface, node, script string) (string, error) {
	t.Helper()
	probeCount++
	name := fmt.Sprintf("probe-%s-%d", node, probeCount)
	pods := cs.CoreV1().Pods(metav1.NamespaceDefault)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			Tolerations:                   allTaints,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "probe", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
			}},
		},
	}
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("creating probe pod on %s: %w", node, err)
	}
	defer func() {
		_ = pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	}()
	var phase corev1.PodPhase
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := framework.Poll(wctx, 500*time.Millisecond, "probe pod "+name+" to finish", func(ctx context.Context) error {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase = p.Status.Phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return nil
		}
		return fmt.Errorf("phase %s %s", phase, p.Status.Message)
	})
	if err != nil {
		return "", err
	}
	logs, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("reading logs of probe pod %s: %w", name, err)
	}
	if phase == corev1.PodFailed {
		return string(logs), fmt.Errorf("probe pod on %s failed; its output:\n%s", node, logs)
	}
	return string(logs), nil
}

// checkPodToPod asserts that a pod on every node reaches the web pod of every node by pod IP.
func checkPodToPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, nodes []string) {
	t.Helper()
	web, err := webPods(ctx, cs, nodes)
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&script, "echo %s=$(timeout 10 wget -q -O- http://%s:%d/ || echo FAILED); ", n, web[n].Status.PodIP, webPort)
	}
	for _, from := range nodes {
		out, err := probePod(ctx, t, cs, from, script.String())
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range nodes {
			want := fmt.Sprintf("%s=%s", to, web[to].Name)
			if !strings.Contains(out, want) {
				t.Errorf("pod on %s could not reach web pod %s (%s) on %s: want %q in output:\n%s",
					from, web[to].Name, web[to].Status.PodIP, to, want, out)
			}
		}
	}
}

// checkServiceSpread asserts that requests to the web Service's ClusterIP from a pod on
// every node reach backends on every node.
func checkServiceSpread(ctx context.Context, t *testing.T, cs kubernetes.Interface, nodes []string) {
	t.Helper()
	web, err := webPods(ctx, cs, nodes)
	if err != nil {
		t.Fatal(err)
	}
	nodeOf := map[string]string{}
	for n, p := range web {
		nodeOf[p.Name] = n
	}
	svc, err := cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, webName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Service: %v", err)
	}
	// After a reboot a backend has a new address: the Service counts once its endpoints
	// name exactly the Ready pods (and kube-proxy, which syncs at most once a second, had
	// a moment to follow); a connection to a gone address meanwhile is the cluster
	// converging, not the Service failing.
	want := map[string]bool{}
	for _, p := range web {
		want[p.Status.PodIP] = true
	}
	err = framework.Poll(ctx, time.Second, "the Service's endpoints to name the Ready web pods", func(ctx context.Context) error {
		slices, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + webName})
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					for _, a := range ep.Addresses {
						got[a] = true
					}
				}
			}
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("endpoints %v, Ready pods %v", keys(got), keys(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	// 45 new connections: with 3 backends, missing one by chance has probability 3·(2/3)^45 ≈ 4e-8.
	script := fmt.Sprintf("for i in $(seq 45); do timeout 5 wget -q -O- http://%s/ || echo FAILED; done", svc.Spec.ClusterIP)
	for _, from := range nodes {
		out, err := probePod(ctx, t, cs, from, script)
		if err != nil {
			t.Fatal(err)
		}
		hits := map[string]int{}
		failed := 0
		for _, l := range strings.Split(out, "\n") {
			if n, ok := nodeOf[strings.TrimSpace(l)]; ok {
				hits[n]++
			} else if strings.TrimSpace(l) == "FAILED" {
				failed++
			}
		}
		for _, n := range nodes {
			if hits[n] == 0 {
				t.Errorf("requests from %s to Service %s (%s) never reached the backend on %s: hits per node %v, %d failed",
					from, webName, svc.Spec.ClusterIP, n, hits, failed)
			}
		}
		if failed > 0 {
			t.Errorf("%d of 45 requests from %s to Service %s failed (hits per node %v):\n%s", failed, from, webName, hits, out)
		}
	}
}

// checkDNS asserts that CoreDNS resolves the web Service's name to its ClusterIP, from a pod.
func checkDNS(ctx context.Context, t *testing.T, cs kubernetes.Interface, node string) {
	t.Helper()
	svc, err := cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, webName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Service: %v", err)
	}
	name := webName + ".default.svc.cluster.local"
	out, err := probePod(ctx, t, cs, node, "for i in 1 2 3 4 5; do nslookup "+name+" && exit 0; sleep 2; done; exit 1")
	if err != nil {
		t.Fatalf("resolving %s: %v", name, err)
	}
	if !strings.Contains(out, svc.Spec.ClusterIP) {
		t.Fatalf("nslookup %s did not answer the ClusterIP %s:\n%s", name, svc.Spec.ClusterIP, out)
	}
}

// restartedSince checks once that the pods matching selector on node run containers that
// started at or after t: proof that the node really restarted them (the API keeps showing
// pods Ready through a reboot shorter than the node-monitor grace period).
func restartedSince(ctx context.Context, cs kubernetes.Interface, namespace, selector, node string, since time.Time) error {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: selector, FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	n := 0
	for _, p := range pods.Items {
		if framework.Terminated(&p) {
			continue // replaced by its controller
		}
		n++
		if err := podRestartedSince(&p, since); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("no running pods match %q on %s", selector, node)
	}
	return nil
}

// podRestartedSince checks that pod p is Ready and all its containers started at or after t.
func podRestartedSince(p *corev1.Pod, since time.Time) error {
	since = since.Truncate(time.Second) // container start times have second precision
	if !framework.PodReady(p) {
		return fmt.Errorf("pod %s on %s is not Ready", p.Name, p.Spec.NodeName)
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil || c.State.Running.StartedAt.Time.Before(since) {
			return fmt.Errorf("container %s of pod %s on %s has not restarted since %s (state %+v)",
				c.Name, p.Name, p.Spec.NodeName, since.Format(time.RFC3339), c.State)
		}
	}
	return nil
}

func ensureCreated(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
