//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// checkKubeletServing checks issue 18's kubelet serving certificates on a cluster of the
// control-plane node cp and the worker (with their IPs): each kubelet serves a certificate
// the cluster CA signed for its own address (the API server verifies it), logs of a pod on
// each node come through the API, and the worker's kubelet credential cannot obtain a
// serving certificate for the control-plane node's address or the kubernetes Service's
// address (each such CSR is denied with the rule it broke and never signed), nor create one
// in the control-plane node's name.
func checkKubeletServing(ctx context.Context, t *testing.T, admin kubernetes.Interface, cp, worker *framework.Node, cpIP, workerIP string) {
	t.Helper()
	caData, err := os.ReadFile(cp.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caData) {
		t.Fatal("no CA in ca.crt")
	}
	for _, ip := range []string{cpIP, workerIP} {
		wait(ctx, t, 3*time.Minute, "the kubelet at "+ip+" serving a certificate of the cluster CA", func(ctx context.Context) error {
			d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: ip, MinVersion: tls.VersionTLS12}, NetDialer: &net.Dialer{Timeout: 2 * time.Second}}
			conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, "10250"))
			if err != nil {
				return err
			}
			leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
			t.Logf("kubelet %s serves %q, issued by %q, valid until %s", ip, leaf.Subject.CommonName, leaf.Issuer.CommonName, leaf.NotAfter.Format(time.RFC3339))
			return conn.Close()
		})
	}

	// Logs through the API of a pod on each node: the API server verifies each kubelet.
	pods, err := admin.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, nodeName := range []string{cp.Name, worker.Name} {
		var pod *corev1.Pod
		for i := range pods.Items {
			if p := &pods.Items[i]; p.Spec.NodeName == nodeName && p.Status.Phase == corev1.PodRunning {
				pod = p
				break
			}
		}
		if pod == nil {
			t.Fatalf("no running kube-system pod on %s", nodeName)
		}
		wait(ctx, t, time.Minute, "logs of "+pod.Name+" on "+nodeName, func(ctx context.Context) error {
			_, err := admin.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: pod.Spec.Containers[0].Name, TailLines: ptrTo(int64(1))}).DoRaw(ctx)
			return err
		})
	}

	// The worker's kubelet, as an attacker holding its credential would use it.
	kubelet := kubeletClient(t, worker, "https://"+cpIP+":6443", caData)
	svc, err := admin.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, node, reason string
		ips                []string
	}{
		{"the control-plane node's address", worker.Name, "AddressOfAnotherNode", []string{workerIP, cpIP}},
		{"the kubernetes Service's address", worker.Name, "AddressOfTheAPI", []string{svc.Spec.ClusterIP}},
	} {
		name := requestServingCertificate(ctx, t, kubelet, c.node, c.ips)
		cond, csr := csrDecision(ctx, t, admin, name)
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != c.reason || len(csr.Status.Certificate) > 0 {
			t.Errorf("the worker's serving CSR for %s (%v): %s %s %q, certificate %d bytes; want Denied %s and none",
				c.what, c.ips, cond.Type, cond.Reason, cond.Message, len(csr.Status.Certificate), c.reason)
			continue
		}
		t.Logf("the worker's serving CSR for %s: denied, %s", c.what, cond.Message)
	}
	// A CSR in the control-plane node's name the API server refuses already
	// (CertificateSigningRequest admission: a node creates CSRs for itself only); the
	// approver's rule for it is tested in internal/approver.
	if _, err := createServingCSR(ctx, kubelet, cp.Name, []string{cpIP}); !apierrors.IsForbidden(err) {
		t.Errorf("the worker's serving CSR in the control-plane node's name: %v, want Forbidden", err)
	}
	// …and an honest one, for its own name and address, is approved: the policy is not
	// simply "deny".
	name := requestServingCertificate(ctx, t, kubelet, worker.Name, []string{workerIP})
	if cond, csr := csrDecision(ctx, t, admin, name); cond.Type != certificatesv1.CertificateApproved || len(csr.Status.Certificate) == 0 {
		t.Errorf("the worker's serving CSR for its own address: %s %s %q, want Approved and signed", cond.Type, cond.Reason, cond.Message)
	}
}

// requestServingCertificate creates, as cs, a kubelet-serving CSR of node for its name
// and ips, and returns its name.
func requestServingCertificate(ctx context.Context, t *testing.T, cs kubernetes.Interface, node string, ips []string) string {
	t.Helper()
	name, err := createServingCSR(ctx, cs, node, ips)
	if err != nil {
		t.Fatalf("creating a serving CSR for %v as the worker's kubelet: %v", ips, err)
	}
	return name
}

// createServingCSR creates, as cs, a kubelet-serving CSR of node for its name and ips.
func createServingCSR(ctx context.Context, cs kubernetes.Interface, node string, ips []string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: []string{node}}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", err
	}
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-serving-" + strings.ReplaceAll(node, ".", "-") + "-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return csr.Name, nil
}
