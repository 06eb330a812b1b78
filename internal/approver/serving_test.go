package approver

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testAPINames are the API's names in these tests: the kubernetes Service's, a control-plane
// endpoint that no node has (a virtual IP) and localhost.
var testAPINames = []string{"kubernetes", "kubernetes.default.svc.cluster.local", "10.96.0.1", "192.0.2.100", "api.example.com", "localhost", "127.0.0.1"}

var servingNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// servingRequestPEM is what a kubelet asks for its serving certificate.
func servingRequestPEM(t *testing.T, node string, dns []string, ips ...string) []byte {
	t.Helper()
	tmpl := x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	return requestPEM(t, tmpl)
}

// servingCSR is a kubelet-serving CSR as the API server records it when the kubelet of
// requester creates it, age old.
func servingCSR(name, requester string, request []byte, age time.Duration) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(servingNow.Add(-age))},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    request,
			SignerName: "kubernetes.io/kubelet-serving",
			Usages:     []certificatesv1.KeyUsage{"digital signature", "server auth"},
			Username:   "system:node:" + requester,
			Groups:     []string{"system:nodes", "system:authenticated"},
		},
	}
}

func testNode(name string, controlPlane bool, addresses ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if controlPlane {
		n.Labels["node-role.kubernetes.io/control-plane"] = ""
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	for _, a := range addresses {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

// The rules of DecideServing, one case each, from the kubelet's honest request to the
// requests a stolen worker credential would make.
func TestDecideServing(t *testing.T) {
	nodes := []*corev1.Node{
		testNode("cp1", true, "172.31.0.11", "fd00::11"),
		testNode("worker1", false, "172.31.0.21"),
		// A worker that set its own status to the control plane's endpoint (a kubelet may
		// write its Node's addresses).
		testNode("worker2", false, "172.31.0.22", "192.0.2.100"),
	}
	view := ServingView{Nodes: nodes, APINames: append(testAPINames, "172.31.0.11"), Now: servingNow}
	fresh := 5 * time.Second
	old := 2 * ServingGrace

	bad := func(mutate func(*certificatesv1.CertificateSigningRequest)) *certificatesv1.CertificateSigningRequest {
		csr := servingCSR("x", "worker1", servingRequestPEM(t, "worker1", []string{"worker1"}, "172.31.0.21"), old)
		mutate(csr)
		return csr
	}
	decidedAlready := bad(func(c *certificatesv1.CertificateSigningRequest) {
		c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved}}
	})
	for _, c := range []struct {
		name       string
		csr        *certificatesv1.CertificateSigningRequest
		want       Action
		wantReason string
		wantInMsg  string
	}{
		{"a worker's own name and address", servingCSR("a", "worker1", servingRequestPEM(t, "worker1", []string{"worker1"}, "172.31.0.21"), fresh),
			Approve, ReasonServingApproved, "172.31.0.21, worker1"},
		{"a control-plane node's own address, which the API is served under too",
			servingCSR("b", "cp1", servingRequestPEM(t, "cp1", []string{"cp1"}, "172.31.0.11", "fd00::11"), fresh), Approve, ReasonServingApproved, ""},
		{"a name in another case with a trailing dot", servingCSR("c", "worker1", servingRequestPEM(t, "worker1", []string{"Worker1."}), fresh),
			Approve, ReasonServingApproved, ""},
		{"another signer is not this policy's", bad(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.SignerName = "kubernetes.io/kube-apiserver-client"
		}), Skip, "", ""},
		{"decided already", decidedAlready, Skip, "", ""},
		{"a worker asks for a control-plane node's serving certificate",
			servingCSR("d", "worker1", servingRequestPEM(t, "cp1", []string{"cp1"}, "172.31.0.11"), fresh), Deny, ReasonNotTheRequester, "only the node itself"},
		{"a user that is no node", bad(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:worker1", []string{"system:authenticated"}
		}), Deny, ReasonNotTheRequester, ""},
		{"a worker names a control-plane node's address",
			servingCSR("e", "worker1", servingRequestPEM(t, "worker1", []string{"worker1"}, "172.31.0.21", "172.31.0.11"), fresh),
			Deny, ReasonOtherNodeAddress, "172.31.0.11 is node cp1's"},
		{"a worker names another node's name", servingCSR("f", "worker1", servingRequestPEM(t, "worker1", []string{"cp1"}), fresh),
			Deny, ReasonOtherNodeAddress, "cp1 is node cp1's"},
		{"a worker whose status claims the control-plane endpoint",
			servingCSR("g", "worker2", servingRequestPEM(t, "worker2", []string{"worker2"}, "172.31.0.22", "192.0.2.100"), fresh),
			Deny, ReasonAPIAddress, "192.0.2.100"},
		{"a worker names the kubernetes Service", servingCSR("h", "worker1", servingRequestPEM(t, "worker1", []string{"kubernetes.default.svc.cluster.local"}), old),
			Deny, ReasonAPIAddress, "kubernetes.default.svc.cluster.local"},
		{"a worker names the Service IP", servingCSR("i", "worker1", servingRequestPEM(t, "worker1", nil, "10.96.0.1"), old),
			Deny, ReasonAPIAddress, "10.96.0.1"},
		{"loopback", servingCSR("j", "cp1", servingRequestPEM(t, "cp1", nil, "127.0.0.1"), fresh), Deny, ReasonSpecialAddress, ""},
		{"localhost, also for a control-plane node", servingCSR("k", "cp1", servingRequestPEM(t, "cp1", []string{"localhost"}), fresh),
			Deny, ReasonSpecialAddress, ""},
		{"an address the Node does not list yet, young", servingCSR("l", "worker1", servingRequestPEM(t, "worker1", nil, "172.31.0.99"), fresh),
			Wait, ReasonNotNodeAddress, ""},
		{"an address the Node does not list, past the grace", servingCSR("m", "worker1", servingRequestPEM(t, "worker1", nil, "172.31.0.99"), old),
			Deny, ReasonNotNodeAddress, "lists no address 172.31.0.99"},
		{"no Node yet", servingCSR("n", "new", servingRequestPEM(t, "new", []string{"new"}), fresh), Wait, ReasonNoSuchNode, ""},
		{"no Node past the grace", servingCSR("o", "new", servingRequestPEM(t, "new", []string{"new"}), old), Deny, ReasonNoSuchNode, ""},
		{"client usage", bad(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, "client auth")
		}), Deny, ReasonServingMalformed, "client auth"},
		{"no server auth", bad(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = []certificatesv1.KeyUsage{"digital signature"}
		}), Deny, ReasonServingMalformed, ""},
		{"no SAN", servingCSR("p", "worker1", servingRequestPEM(t, "worker1", nil), fresh), Deny, ReasonServingMalformed, "no DNS name or IP"},
		{"an e-mail SAN", servingCSR("q", "worker1", requestPEM(t, x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: "system:node:worker1", Organization: []string{"system:nodes"}},
			DNSNames:       []string{"worker1"},
			EmailAddresses: []string{"a@example.com"}}), fresh), Deny, ReasonServingMalformed, ""},
		{"another organization", servingCSR("r", "worker1", requestPEM(t, x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: "system:node:worker1", Organization: []string{"system:masters"}},
			DNSNames: []string{"worker1"}}), fresh), Deny, ReasonServingMalformed, "organization"},
		{"garbage", bad(func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = []byte("not pem") }), Deny, ReasonServingMalformed, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := DecideServing(c.csr, view)
			if d.Action != c.want || d.Reason != c.wantReason {
				t.Fatalf("%v %s (%s), want %v %s", d.Action, d.Reason, d.Message, c.want, c.wantReason)
			}
			if !strings.Contains(d.Message, c.wantInMsg) {
				t.Errorf("message %q, want it to say %q", d.Message, c.wantInMsg)
			}
		})
	}
}

// The controller approves a kubelet's serving CSR, denies a worker's request for the
// control-plane node's address with a Warning Event, and waits for an address to appear on
// the Node instead of denying at once.
func TestControllerServing(t *testing.T) {
	cp := testNode("cp1", true, "172.31.0.11")
	worker := testNode("worker1", false, "172.31.0.21")
	now := metav1.Now()
	fresh := func(csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		csr.CreationTimestamp = now
		return csr
	}
	c := newCluster(t, nil, cp, worker,
		fresh(servingCSR("serving-cp1", "cp1", servingRequestPEM(t, "cp1", []string{"cp1"}, "172.31.0.11"), 0)),
		fresh(servingCSR("serving-worker1-stolen", "worker1", servingRequestPEM(t, "worker1", []string{"worker1"}, "172.31.0.11"), 0)),
		fresh(servingCSR("serving-worker1-new-ip", "worker1", servingRequestPEM(t, "worker1", []string{"worker1"}, "172.31.0.31"), 0)),
	)
	assertCondition(t, c.waitDecided(t, "serving-cp1"), "Approved", ReasonServingApproved)
	assertCondition(t, c.waitDecided(t, "serving-worker1-stolen"), "Denied", ReasonOtherNodeAddress)
	var warned bool
	for range 2 {
		if e := c.nextEvent(t); strings.HasPrefix(e, "Warning "+ReasonOtherNodeAddress+" ") && strings.Contains(e, "172.31.0.11 is node cp1's") {
			warned = true
		}
	}
	if !warned {
		t.Error("no Warning Event naming the other node's address")
	}
	// Not decided while its address is missing from the Node; approved once it is there.
	time.Sleep(300 * time.Millisecond)
	csr, err := c.client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), "serving-worker1-new-ip", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(csr.Status.Conditions) != 0 {
		t.Fatalf("decided %+v before its address was on the Node", csr.Status.Conditions)
	}
	worker.Status.Addresses = append(worker.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "172.31.0.31"})
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(context.Background(), worker, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	assertCondition(t, c.waitDecided(t, "serving-worker1-new-ip"), "Approved", ReasonServingApproved)
}
