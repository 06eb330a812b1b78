package approver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requestDER returns a certificate request signed with a fresh ECDSA P-256 key.
func requestDER(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func requestPEM(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: requestDER(t, tmpl)})
}

// nodeRequest is what a kubelet asks for on TLS bootstrap.
func nodeRequest(t *testing.T, node string) []byte {
	t.Helper()
	return requestPEM(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}})
}

// bootstrapCSR is a kubelet client CSR as the API server records it for a bootstrap token.
func bootstrapCSR(name string, request []byte) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    request,
			SignerName: "kubernetes.io/kube-apiserver-client-kubelet",
			Usages:     []certificatesv1.KeyUsage{"digital signature", "client auth"},
			Username:   "system:bootstrap:abcdef",
			Groups:     []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"},
		},
	}
}

func TestDecide(t *testing.T) {
	tampered := requestDER(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:new-node", Organization: []string{"system:nodes"}}})
	tampered[len(tampered)-1] ^= 0xff // last byte of the signature: still parses, no longer verifies
	garbageDER := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("not DER at all")})
	goodDER, _ := pem.Decode(nodeRequest(t, "new-node"))
	wrongType := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: goodDER.Bytes})
	long253, long254 := strings.Repeat("a", 253), strings.Repeat("a", 254)

	with := func(csr *certificatesv1.CertificateSigningRequest, f func(*certificatesv1.CertificateSigningRequest)) *certificatesv1.CertificateSigningRequest {
		f(csr)
		return csr
	}
	condition := func(ct certificatesv1.RequestConditionType) func(*certificatesv1.CertificateSigningRequest) {
		return func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: ct, Status: corev1.ConditionTrue}}
		}
	}
	usages := func(u ...certificatesv1.KeyUsage) func(*certificatesv1.CertificateSigningRequest) {
		return func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Usages = u }
	}
	subject := func(cn string, org ...string) []byte {
		return requestPEM(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: org}})
	}
	withSAN := func(f func(*x509.CertificateRequest)) []byte {
		tmpl := x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:new-node", Organization: []string{"system:nodes"}}}
		f(&tmpl)
		return requestPEM(t, tmpl)
	}

	tests := []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		// lookups says whether Decide may consult Known: not before the request is
		// recognised as a well-formed bootstrap request for a valid name.
		lookups    bool
		wantAction Action
		wantReason string
		wantNode   string
		wantInMsg  []string
	}{
		// Not a bootstrap token: renewals and admins are someone else's business.
		{name: "node renewing its own certificate", csr: with(bootstrapCSR("csr-renew", nodeRequest(t, "node1")), func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:node1", []string{"system:nodes", "system:authenticated"}
		}), wantAction: Skip},
		{name: "admin", csr: with(bootstrapCSR("csr-admin", nodeRequest(t, "node1")), func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "kubernetes-admin", []string{"system:masters", "system:authenticated"}
		}), wantAction: Skip},
		{name: "no groups", csr: with(bootstrapCSR("csr-nogroups", nodeRequest(t, "new-node")), func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Groups = nil
		}), wantAction: Skip},
		// Other signers.
		{name: "signer kube-apiserver-client", csr: with(bootstrapCSR("csr-client", nodeRequest(t, "new-node")), func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.SignerName = "kubernetes.io/kube-apiserver-client"
		}), wantAction: Skip},
		{name: "signer kubelet-serving", csr: with(bootstrapCSR("csr-serving", nodeRequest(t, "new-node")), func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.SignerName = "kubernetes.io/kubelet-serving"
		}), wantAction: Skip},
		{name: "custom signer", csr: with(bootstrapCSR("csr-custom", nodeRequest(t, "new-node")), func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.SignerName = "example.com/anything"
		}), wantAction: Skip},
		// Decided already.
		{name: "approved", csr: with(bootstrapCSR("csr-approved", nodeRequest(t, "new-node")), condition("Approved")), wantAction: Skip},
		{name: "denied", csr: with(bootstrapCSR("csr-denied", nodeRequest(t, "new-node")), condition("Denied")), wantAction: Skip},
		{name: "failed", csr: with(bootstrapCSR("csr-failed", nodeRequest(t, "new-node")), condition("Failed")), wantAction: Skip},
		{name: "denied request for an existing node", csr: with(bootstrapCSR("csr-denied2", nodeRequest(t, "node1")), condition("Denied")), wantAction: Skip},

		// Malformed requests.
		{name: "garbage instead of PEM", csr: bootstrapCSR("csr-1", []byte("hello")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"no PEM CERTIFICATE REQUEST"}},
		{name: "empty request", csr: bootstrapCSR("csr-1", nil),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"no PEM CERTIFICATE REQUEST"}},
		{name: "PEM of the wrong type", csr: bootstrapCSR("csr-1", wrongType),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"no PEM CERTIFICATE REQUEST"}},
		{name: "PEM holding no DER", csr: bootstrapCSR("csr-1", garbageDER),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"does not parse"}},
		{name: "bad signature", csr: bootstrapCSR("csr-1", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"signature is invalid"}},
		{name: "no organization", csr: bootstrapCSR("csr-1", subject("system:node:new-node")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"organization [], want [system:nodes]"}},
		{name: "system:masters added to the organization", csr: bootstrapCSR("csr-1", subject("system:node:new-node", "system:nodes", "system:masters")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"organization [system:nodes system:masters]"}},
		{name: "other organization", csr: bootstrapCSR("csr-1", subject("system:node:new-node", "system:masters")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"organization [system:masters]"}},
		{name: "common name without system:node: prefix", csr: bootstrapCSR("csr-1", subject("new-node", "system:nodes")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`common name "new-node"`}},
		{name: "common name of an admin", csr: bootstrapCSR("csr-1", subject("kubernetes-admin", "system:nodes")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`common name "kubernetes-admin"`}},
		{name: "empty name after prefix", csr: bootstrapCSR("csr-1", subject("system:node:", "system:nodes")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`common name "system:node:"`}},
		{name: "DNS SAN", csr: bootstrapCSR("csr-1", withSAN(func(r *x509.CertificateRequest) { r.DNSNames = []string{"new-node"} })),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"subject alternative names"}},
		{name: "IP SAN", csr: bootstrapCSR("csr-1", withSAN(func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.ParseIP("10.0.0.7")} })),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"subject alternative names"}},
		{name: "email SAN", csr: bootstrapCSR("csr-1", withSAN(func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"root@example.com"} })),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"subject alternative names"}},
		{name: "URI SAN", csr: bootstrapCSR("csr-1", withSAN(func(r *x509.CertificateRequest) {
			r.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/kube-system/sa/default"}}
		})),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{"subject alternative names"}},
		{name: "usages lack client auth", csr: with(bootstrapCSR("csr-1", nodeRequest(t, "new-node")), usages("digital signature", "key encipherment")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`lack "client auth"`}},
		{name: "no usages", csr: with(bootstrapCSR("csr-1", nodeRequest(t, "new-node")), usages()),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`lack "client auth"`}},
		{name: "server auth added", csr: with(bootstrapCSR("csr-1", nodeRequest(t, "new-node")), usages("digital signature", "client auth", "server auth")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`usage "server auth"`}},
		{name: "cert sign added", csr: with(bootstrapCSR("csr-1", nodeRequest(t, "new-node")), usages("client auth", "cert sign")),
			wantAction: Deny, wantReason: "NotANodeClientCertificate", wantInMsg: []string{`usage "cert sign"`}},

		// Invalid names.
		{name: "uppercase name", csr: bootstrapCSR("csr-1", nodeRequest(t, "New-Node")),
			wantAction: Deny, wantReason: "InvalidNodeName", wantNode: "New-Node", wantInMsg: []string{`"New-Node" is not a valid node name`}},
		{name: "name with a slash", csr: bootstrapCSR("csr-1", nodeRequest(t, "a/b")),
			wantAction: Deny, wantReason: "InvalidNodeName", wantNode: "a/b", wantInMsg: []string{`"a/b" is not a valid node name`}},
		{name: "name of 254 characters", csr: bootstrapCSR("csr-1", nodeRequest(t, long254)),
			wantAction: Deny, wantReason: "InvalidNodeName", wantNode: long254, wantInMsg: []string{"is not a valid node name", "no more than 253 characters"}},

		// Well-formed requests, judged by what the cluster knows.
		{name: "existing node", csr: bootstrapCSR("csr-1", nodeRequest(t, "node1")), lookups: true,
			wantAction: Deny, wantReason: "NodeNameTaken", wantNode: "node1",
			wantInMsg: []string{"node node1 exists", "--node-name", "kubectl delete node node1"}},
		{name: "name issued to another CSR", csr: bootstrapCSR("csr-2", nodeRequest(t, "issued-node")), lookups: true,
			wantAction: Deny, wantReason: "NodeNameAlreadyIssued", wantNode: "issued-node",
			wantInMsg: []string{"node issued-node (CSR csr-old)", "--node-name"}},
		{name: "name issued to this CSR: retried approval", csr: bootstrapCSR("csr-retry", nodeRequest(t, "retry-node")), lookups: true,
			wantAction: Approve, wantReason: "SelfkubeNewNode", wantNode: "retry-node", wantInMsg: []string{"new node retry-node"}},
		{name: "new name", csr: bootstrapCSR("csr-1", nodeRequest(t, "new-node")), lookups: true,
			wantAction: Approve, wantReason: "SelfkubeNewNode", wantNode: "new-node",
			wantInMsg: []string{"new node new-node", "requested by system:bootstrap:abcdef"}},
		{name: "new name, usages of an RSA kubelet", csr: with(bootstrapCSR("csr-1", nodeRequest(t, "new-node")), usages("digital signature", "key encipherment", "client auth")), lookups: true,
			wantAction: Approve, wantReason: "SelfkubeNewNode", wantNode: "new-node"},
		{name: "new name of 253 characters", csr: bootstrapCSR("csr-1", nodeRequest(t, long253)), lookups: true,
			wantAction: Approve, wantReason: "SelfkubeNewNode", wantNode: long253},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issued := map[string]string{"issued-node": "csr-old", "retry-node": "csr-retry"}
			known := Known{
				Node: func(name string) bool {
					if !tt.lookups {
						t.Errorf("Decide looked up node %q", name)
					}
					return name == "node1"
				},
				Issued: func(name string) (string, bool) {
					if !tt.lookups {
						t.Errorf("Decide looked up the ledger for %q", name)
					}
					csr, ok := issued[name]
					return csr, ok
				},
			}
			got := Decide(tt.csr, known)
			if got.Action != tt.wantAction || got.Reason != tt.wantReason || got.NodeName != tt.wantNode {
				t.Fatalf("Decide = {%v %q %q %q}, want {%v %q %q ...}", got.Action, got.NodeName, got.Reason, got.Message, tt.wantAction, tt.wantNode, tt.wantReason)
			}
			if tt.wantAction == Skip && got.Message != "" {
				t.Errorf("Skip with message %q", got.Message)
			}
			if tt.wantAction != Skip && got.Message == "" {
				t.Errorf("%v without a message", got.Action)
			}
			for _, s := range tt.wantInMsg {
				if !strings.Contains(got.Message, s) {
					t.Errorf("message %q lacks %q", got.Message, s)
				}
			}
			if got.Action == Deny {
				if !strings.HasPrefix(got.Message, "denied by selfkube: ") {
					t.Errorf("message %q does not say who denied", got.Message)
				}
				assertNoPEM(t, got.Message, tt.csr.Spec.Request)
			}
		})
	}
}

// assertNoPEM fails if msg holds the request or any line of its PEM.
func assertNoPEM(t *testing.T, msg string, request []byte) {
	t.Helper()
	if strings.Contains(msg, "-----BEGIN") {
		t.Errorf("message %q holds a PEM header", msg)
	}
	for _, line := range strings.Split(string(request), "\n") {
		if len(line) >= 16 && strings.Contains(msg, line) {
			t.Errorf("message %q holds the request's %q", msg, line)
		}
	}
}

func TestActionString(t *testing.T) {
	for _, tt := range []struct {
		a    Action
		want string
	}{{Skip, "Skip"}, {Approve, "Approve"}, {Deny, "Deny"}, {Action(42), "Skip"}} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.a.String(); got != tt.want {
				t.Errorf("Action(%d).String() = %q, want %q", int(tt.a), got, tt.want)
			}
		})
	}
}
