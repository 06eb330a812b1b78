//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// Names the attacks below aim at; spelled here, not taken from the product.
const (
	handOffSecret        = "selfkube-control-plane-certs"
	checkpointAnnotation = "selfkube.io/checkpoint"
)

// tokenClient authenticates with a bootstrap token, as whoever holds a worker's join
// command can.
func tokenClient(t *testing.T, server string, caData []byte, token string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: server, BearerToken: token, Timeout: 10 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: caData},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// kubeletClient authenticates as a node's kubelet, with its rotated client certificate.
func kubeletClient(t *testing.T, n *framework.Node, server string, caData []byte) kubernetes.Interface {
	t.Helper()
	pem := kubeletCredential(t, n)
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: server, Timeout: 10 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: caData, CertFile: pem, KeyFile: pem},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// kubeletCredential is the file (certificate and key) of node n's rotated kubelet client
// certificate, as the test sees it.
func kubeletCredential(t *testing.T, n *framework.Node) string {
	t.Helper()
	f, err := kubeletCredentialFile(n)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// kubeletCredentialFile is kubeletCredential, or why there is none yet.
func kubeletCredentialFile(n *framework.Node) (string, error) {
	// kubelet-client-current.pem links to an absolute path inside the node.
	dir := n.HostPath("/var/lib/kubelet/pki")
	target, err := os.Readlink(filepath.Join(dir, "kubelet-client-current.pem"))
	if err != nil {
		return "", fmt.Errorf("the kubelet of %s has no rotated client certificate: %w", n.Name, err)
	}
	return filepath.Join(dir, filepath.Base(target)), nil
}

// requestNodeCertificate asks, as cs, for a kubelet client certificate of node name: the
// first half of taking over a node's identity.
func requestNodeCertificate(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-takeover-" + name + "-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a CSR for %s with the token: %v", name, err)
	}
	return csr.Name
}

// csrDecision waits until CSR name is approved or denied and returns that condition; an
// approved one must also be issued.
func csrDecision(ctx context.Context, t *testing.T, admin kubernetes.Interface, name string) (certificatesv1.CertificateSigningRequestCondition, *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	var got certificatesv1.CertificateSigningRequestCondition
	var csr *certificatesv1.CertificateSigningRequest
	wait(ctx, t, time.Minute, "a decision on CSR "+name, func(ctx context.Context) error {
		var err error
		csr, err = admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range csr.Status.Conditions {
			switch c.Type {
			case certificatesv1.CertificateDenied:
				got = c
				return nil
			case certificatesv1.CertificateApproved:
				got = c
				if len(csr.Status.Certificate) == 0 {
					return fmt.Errorf("approved, not issued yet")
				}
				return nil
			}
		}
		return fmt.Errorf("no decision yet")
	})
	return got, csr
}

// checkNodeTakeoverRefused tries, with a worker's join token, to obtain the identity of
// each node in taken (a control-plane node among them), and then of a new name twice.
// The taken names and the second request for the new name must be denied and never
// signed; the new name's first request is approved (the kubeadm flow keeps working).
func checkNodeTakeoverRefused(ctx context.Context, t *testing.T, admin kubernetes.Interface, server string, caData []byte, token string, taken ...string) {
	t.Helper()
	tc := tokenClient(t, server, caData, token)
	expectDenied := func(csr, reason, node string) {
		t.Helper()
		cond, obj := csrDecision(ctx, t, admin, csr)
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != reason {
			t.Errorf("the token's CSR for %s: %s (%s: %s), want Denied with reason %s", node, cond.Type, cond.Reason, cond.Message, reason)
		}
		if len(obj.Status.Certificate) > 0 {
			t.Errorf("the token's CSR for %s was signed", node)
		}
		if !strings.Contains(cond.Message, node) {
			t.Errorf("the denial of %s does not name the node: %q", node, cond.Message)
		}
		wait(ctx, t, time.Minute, "an Event saying why CSR "+csr+" was denied", func(ctx context.Context) error {
			evs, err := admin.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + csr})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Reason == reason && e.Type == corev1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("%d events, none a Warning %s", len(evs.Items), reason)
		})
	}
	for _, node := range taken {
		expectDenied(requestNodeCertificate(ctx, t, tc, node), "NodeNameTaken", node)
	}
	newName := fmt.Sprintf("e2e-new-%d", time.Now().UnixNano()%100000)
	if cond, _ := csrDecision(ctx, t, admin, requestNodeCertificate(ctx, t, tc, newName)); cond.Type != certificatesv1.CertificateApproved {
		t.Errorf("the token's CSR for the new node %s: %s (%s), want Approved", newName, cond.Type, cond.Message)
	}
	expectDenied(requestNodeCertificate(ctx, t, tc, newName), "NodeNameAlreadyIssued", newName)

	// The token reads neither the control plane's Secrets nor the CA hand-off.
	for _, s := range []string{"kube-controller-manager", "kube-apiserver", handOffSecret} {
		_, err := tc.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, s, metav1.GetOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("GET secret kube-system/%s with a worker's token: %v, want Forbidden", s, err)
		}
	}
}

// checkSecretsEncryptedAtRest reads a control-plane Secret straight from etcd's keyspace
// on node n: it must be an encrypted envelope, with no key material in clear.
func checkSecretsEncryptedAtRest(ctx context.Context, t *testing.T, n *framework.Node) {
	t.Helper()
	const pki = "/etc/kubernetes/pki/etcd/"
	out, err := n.Exec(ctx, "etcdctl", "--endpoints=https://127.0.0.1:2379", "--cacert="+pki+"ca.crt",
		"--cert="+pki+"healthcheck-client.crt", "--key="+pki+"healthcheck-client.key",
		"get", "/registry/secrets/kube-system/kube-controller-manager", "--print-value-only")
	if err != nil {
		t.Fatalf("reading the controller manager's Secret from etcd: %v", err)
	}
	if len(out) < 100 {
		t.Fatalf("etcd returned %d bytes for the controller manager's Secret: %q", len(out), out)
	}
	if !strings.HasPrefix(out, "k8s:enc:") {
		t.Errorf("the Secret is stored in clear in etcd (starts %q)", out[:min(40, len(out))])
	}
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "ca.key") {
		t.Errorf("etcd holds the controller manager's Secret with readable key material")
	}
}

// checkPrivateDirs checks the modes of directories on n that hold keys.
func checkPrivateDirs(t *testing.T, n *framework.Node, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		info, err := os.Stat(n.HostPath(d))
		if err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		if mode := info.Mode().Perm(); mode != 0o700 {
			t.Errorf("%s has mode %o, want 700", d, mode)
		}
	}
}

// abusePod is a pod that tries to steer a checkpointer with its annotation.
func abusePod(namespace, name, node, checkpoint string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name,
			Labels:      map[string]string{"app": "e2e-abuse"},
			Annotations: map[string]string{checkpointAnnotation: checkpoint},
		},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "sleep", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "100000"},
			}},
		},
	}
}

// startCheckpointAbuse creates, against the checkpointer of control-plane node cp, what an
// attacker can: a user pod on cp claiming to be the apiserver (it would switch failover
// off), kube-system pods not made by the control plane with path-traversal names (bound to
// cp, and bound to the worker), and, with the worker's kubelet credential, a mirror pod
// with such a name.
func startCheckpointAbuse(ctx context.Context, t *testing.T, admin kubernetes.Interface, cp, worker string, workerKubelet kubernetes.Interface) {
	t.Helper()
	for _, p := range []*corev1.Pod{
		abusePod(metav1.NamespaceDefault, "abuse-claims-apiserver", cp, "kube-apiserver"),
		abusePod(metav1.NamespaceSystem, "abuse-traversal-cp", cp, "x/../etcd"),
		abusePod(metav1.NamespaceSystem, "abuse-traversal-worker", worker, "x/../etcd"),
		abusePod(metav1.NamespaceSystem, "abuse-parent-dir", cp, "../checkpoints/kube-apiserver"),
	} {
		if _, err := admin.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); ensureCreated(err) != nil {
			t.Fatalf("creating %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
	// A mirror pod, as the worker's kubelet may make one: owned by its Node, in any
	// namespace, with any annotations.
	wn, err := admin.CoreV1().Nodes().Get(ctx, worker, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mirror := abusePod(metav1.NamespaceSystem, "abuse-mirror-"+worker, worker, "x/../etcd")
	mirror.Annotations["kubernetes.io/config.mirror"] = "e2e"
	mirror.Annotations["kubernetes.io/config.source"] = "file"
	mirror.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: worker, UID: wn.UID, Controller: ptr.To(true)}}
	if _, err := workerKubelet.CoreV1().Pods(metav1.NamespaceSystem).Create(ctx, mirror, metav1.CreateOptions{}); ensureCreated(err) != nil {
		t.Fatalf("the worker's kubelet could not create the mirror pod (the attack needs it): %v", err)
	}
	wait(ctx, t, 2*time.Minute, "the abusive pods running", func(ctx context.Context) error {
		for _, p := range []struct{ ns, name string }{
			{metav1.NamespaceDefault, "abuse-claims-apiserver"}, {metav1.NamespaceSystem, "abuse-traversal-cp"},
			{metav1.NamespaceSystem, "abuse-traversal-worker"},
		} {
			pod, err := admin.CoreV1().Pods(p.ns).Get(ctx, p.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pod.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%s/%s is %s", p.ns, p.name, pod.Status.Phase)
			}
		}
		return nil
	})
}

// checkCheckpointerUnmoved checks, a while after startCheckpointAbuse, that node n's
// checkpointer touched nothing it should not: etcd's static pod is there, the checkpoint
// directory holds only the control plane's checkpoints, and it said why it ignored pods.
func checkCheckpointerUnmoved(ctx context.Context, t *testing.T, admin kubernetes.Interface, n *framework.Node) {
	t.Helper()
	time.Sleep(10 * time.Second) // several checkpointer syncs (1 s each)
	if _, err := os.Stat(n.HostPath("/etc/kubernetes/manifests/etcd.yaml")); err != nil {
		t.Errorf("etcd's static pod is gone from %s: %v", n.Name, err)
	}
	es, err := os.ReadDir(n.HostPath("/etc/kubernetes/checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if !slices.Contains([]string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", ".lock"}, e.Name()) {
			t.Errorf("unexpected entry in %s's checkpoint directory: %s", n.Name, e.Name())
		}
	}
	ms, err := filepath.Glob(n.HostPath("/etc/kubernetes/manifests/checkpoint-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) > 0 {
		t.Errorf("checkpoints active with the API up: %v", ms)
	}
	if err := framework.Readyz(ctx, admin); err != nil {
		t.Errorf("the API after the abuse: %v", err)
	}
	evs, err := admin.CoreV1().Events(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ignored := 0
	for _, e := range evs.Items {
		if e.Reason == "CheckpointIgnored" {
			ignored++
		}
	}
	if ignored == 0 {
		t.Errorf("the checkpointer recorded no CheckpointIgnored event for the abusive pods")
	}
}

// killJoinAfter starts argv (a selfkube join) on n, waits until its record says phase
// finished, and SIGKILLs it: a join that stopped half-way, as a crash or a reboot would
// leave it.
func killJoinAfter(ctx context.Context, t *testing.T, n *framework.Node, phase string, argv []string) {
	t.Helper()
	killAfterPhase(ctx, t, n, "join", phase, argv)
}

// killAfterPhase runs argv (selfkube COMMAND …) on n and SIGKILLs it once its record
// (/var/lib/selfkube/COMMAND.json) lists phase as done: the next phase has begun.
func killAfterPhase(ctx context.Context, t *testing.T, n *framework.Node, command, phase string, argv []string) {
	t.Helper()
	killWhen(ctx, t, n, command, "past its "+phase+" phase", argv, func(string) error {
		done, err := phasesDone(n, command)
		if err != nil {
			return err
		}
		if !slices.Contains(done, phase) {
			return fmt.Errorf("done: %v", done)
		}
		return nil
	})
}

// phasesDone reads the phases that n's record of command lists as finished (none when
// there is no record yet).
func phasesDone(n *framework.Node, command string) ([]string, error) {
	b, err := os.ReadFile(n.HostPath("/var/lib/selfkube/" + command + ".json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec struct{ Done []string }
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, err // a record being written: read it again
	}
	return rec.Done, nil
}

// killAtEveryBoundary runs argv (selfkube COMMAND …) on n again and again and SIGKILLs
// each run as soon as its record gains a phase: every phase an earlier run finished runs
// again and converges, the next one finishes, and the run dies at the start of the one
// after it. It stops once the record holds last, and returns the phase after which each
// run was killed. A run that fails by itself, or that finishes the whole command, fails t.
func killAtEveryBoundary(ctx context.Context, t *testing.T, n *framework.Node, command, last string, argv []string) []string {
	t.Helper()
	var killedAfter []string
	for {
		before, err := phasesDone(n, command)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(before, last) {
			return killedAfter
		}
		out, exited := startCommand(ctx, t, n, argv)
		deadline := time.After(4 * time.Minute)
		// Polled every 2 ms: the kill lands a few milliseconds into the next phase.
		tick := time.NewTicker(2 * time.Millisecond)
	poll:
		for {
			select {
			case err := <-exited:
				tick.Stop()
				t.Fatalf("the %s of %s ended before it finished a phase that earlier runs had not (%v): done before it %v:\n%s",
					command, n.Name, err, before, out.String())
			case <-deadline:
				tick.Stop()
				t.Fatalf("the %s of %s finished no new phase in 4 minutes (done before it %v):\n%s", command, n.Name, before, out.String())
			case <-tick.C:
				done, err := phasesDone(n, command)
				if err == nil && len(done) > len(before) {
					break poll
				}
			}
		}
		tick.Stop()
		if err := killCommand(n.Name, "selfkube", command); err != nil {
			t.Fatal(err)
		}
		<-exited
		done, err := phasesDone(n, command)
		if err != nil {
			t.Fatal(err)
		}
		if len(done) > len(before)+1 {
			t.Logf("%s: the run finished %v before the kill landed", command, done[len(before):])
		}
		killedAfter = append(killedAfter, done[len(done)-1])
		t.Logf("killed the %s of %s after its %s phase:\n%s", command, n.Name, done[len(done)-1], out.String())
	}
}

// killWhen runs argv (selfkube COMMAND …) on n and SIGKILLs it as soon as ready (given
// the output so far) passes; it fails t if the command ends first.
func killWhen(ctx context.Context, t *testing.T, n *framework.Node, command, when string, argv []string, ready func(out string) error) {
	t.Helper()
	out, exited := startCommand(ctx, t, n, argv)
	wait(ctx, t, 4*time.Minute, "the "+command+" of "+n.Name+" "+when, func(context.Context) error {
		select {
		case err := <-exited:
			t.Fatalf("the %s ended before it could be killed (%v):\n%s", command, err, out.String())
		default:
		}
		return ready(out.String())
	})
	if err := killCommand(n.Name, "selfkube", command); err != nil {
		t.Fatal(err)
	}
	<-exited
	t.Logf("killed the %s of %s %s:\n%s", command, n.Name, when, out.String())
}

// startCommand starts argv on n; its output collects in out, and exited delivers how it
// ended.
func startCommand(ctx context.Context, t *testing.T, n *framework.Node, argv []string) (out *syncBuilder, exited <-chan error) {
	t.Helper()
	cmd, err := n.Command(ctx, argv...)
	if err != nil {
		t.Fatal(err)
	}
	out = &syncBuilder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return out, done
}

// syncBuilder is a strings.Builder that a command's output and a poller share.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inNodeCgroup says whether a /proc/PID/cgroup text puts the process in node's cgroup
// or below it: a command the harness runs sits in the node's cgroup itself, a container
// below it.
func inNodeCgroup(cgroups, node string) bool {
	dir := "/selfkube-e2e/" + node
	for _, l := range strings.Split(cgroups, "\n") {
		if strings.HasSuffix(l, dir) || strings.Contains(l, dir+"/") {
			return true
		}
	}
	return false
}

// killCommand SIGKILLs the processes of node whose command is comm and, unless arg is
// empty, with arg among its arguments.
func killCommand(node, comm, arg string) error {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	killed := 0
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		c, err1 := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
		cg, err2 := os.ReadFile(filepath.Join("/proc", p.Name(), "cgroup"))
		argv, err3 := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err1 != nil || err2 != nil || err3 != nil || strings.TrimSpace(string(c)) != comm ||
			!inNodeCgroup(string(cg), node) || arg != "" && !slices.Contains(strings.Split(string(argv), "\x00"), arg) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("killing %s (pid %d): %w", comm, pid, err)
		}
		killed++
	}
	if killed == 0 {
		return fmt.Errorf("no %s %s process runs on node %s", comm, arg, node)
	}
	return nil
}
