package approver

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/selfkube/selfkube/internal/node"
)

// Kubelet serving certificates.
//
// The kubelets ask for their serving certificate with a CSR for the signer
// kubernetes.io/kubelet-serving (serverTLSBootstrap), and the API server verifies it
// against the cluster CA (--kubelet-certificate-authority). Kubernetes approves none of
// these by itself, because what they name comes from the Node's status, which the kubelet
// writes itself. The cluster CA signs them, and that CA is also the one every client
// trusts for the API: a serving certificate for an address the API is reached under is a
// certificate to impersonate the API. So DecideServing approves a kubelet-serving CSR only
// when all of this holds:
//
//   - the requester is the node the certificate names (user system:node:<name> in
//     system:nodes, subject CN system:node:<name>, O system:nodes), and Node <name> exists;
//   - its usages are a server's (server auth, with digital signature and key
//     encipherment at most), and it names at least one DNS name or IP and nothing else;
//   - each IP is one of that Node's InternalIP/ExternalIP addresses, each DNS name the
//     node's name or one of its Hostname/InternalDNS/ExternalDNS addresses;
//   - no other Node has that name or address;
//   - no loopback, unspecified, link-local or multicast address;
//   - none of the names the API is served under (the kubernetes Service's names and
//     address, the control-plane endpoint, apiServer.certSANs: pki.APINames), unless the
//     node is a control-plane node (node-role.kubernetes.io/control-plane, a label a kubelet
//     cannot set on itself): its apiserver serves there anyway.
//
// Every other kubelet-serving CSR is denied with the rule it broke, except one that names
// an address its Node does not list yet: the kubelet writes its Node status before it asks,
// but the approver's cache may lag, so such a CSR waits up to ServingGrace before it is
// denied.

// ServingGrace is how long a kubelet-serving CSR may wait for its Node, or for an address
// it names to appear on its Node, before it is denied.
const ServingGrace = time.Minute

// Reasons of the decisions on kubelet-serving CSRs.
const (
	ReasonServingApproved  = "SelfkubeKubeletServing"
	ReasonServingMalformed = "NotAKubeletServingCertificate"
	ReasonNotTheRequester  = "RequesterIsNotTheNode"
	ReasonNoSuchNode       = "NoSuchNode"
	ReasonNotNodeAddress   = "NotTheNodesAddress"
	ReasonOtherNodeAddress = "AddressOfAnotherNode"
	ReasonAPIAddress       = "AddressOfTheAPI"
	ReasonSpecialAddress   = "SpecialAddress"
)

// ServingView is what DecideServing knows of the cluster.
type ServingView struct {
	// Nodes are the cluster's Nodes.
	Nodes []*corev1.Node
	// APINames are the names and addresses the API is served under (pki.APINames).
	APINames []string
	// Now is the current time.
	Now time.Time
}

// DecideServing is the approval policy for one kubelet-serving CSR. It returns Wait
// (decide again later) while the CSR is younger than ServingGrace and its Node, or an
// address it names, is not seen yet.
func DecideServing(csr *certificatesv1.CertificateSigningRequest, view ServingView) Decision {
	if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName || decided(csr) {
		return Decision{Action: Skip}
	}
	deny := func(name, reason, format string, args ...any) Decision {
		return Decision{Action: Deny, NodeName: name, Reason: reason,
			Message: "denied by selfkube: " + fmt.Sprintf(format, args...)}
	}
	young := view.Now.Sub(csr.CreationTimestamp.Time) < ServingGrace
	req, name, err := servingRequest(csr)
	if err != nil {
		return deny(name, ReasonServingMalformed, "%v; a node may only request a serving certificate for itself", err)
	}
	if csr.Spec.Username != nodeUserPrefix+name || !slices.Contains(csr.Spec.Groups, nodesGroup) {
		return deny(name, ReasonNotTheRequester, "%s asks for node %s's serving certificate; only the node itself (%s%s in %s) may",
			csr.Spec.Username, name, nodeUserPrefix, name, nodesGroup)
	}
	var self *corev1.Node
	for _, n := range view.Nodes {
		if n.Name == name {
			self = n
		}
	}
	if self == nil {
		if young {
			return Decision{Action: Wait, NodeName: name, Reason: ReasonNoSuchNode, Message: "waiting for Node " + name}
		}
		return deny(name, ReasonNoSuchNode, "no Node %s exists", name)
	}
	_, controlPlane := self.Labels[node.LabelControlPlane]
	api := map[string]bool{}
	for _, a := range view.APINames {
		api[canonical(a)] = true
	}
	// owners: every name and address a Node has, with the Nodes that have it.
	owners := map[string][]string{}
	for _, n := range view.Nodes {
		owners[canonical(n.Name)] = append(owners[canonical(n.Name)], n.Name)
		for _, a := range n.Status.Addresses {
			if k := canonical(a.Address); !slices.Contains(owners[k], n.Name) {
				owners[k] = append(owners[k], n.Name)
			}
		}
	}
	mine := map[string]bool{canonical(name): true}
	for _, a := range self.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				mine[ip.String()] = true
			}
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			if net.ParseIP(a.Address) == nil {
				mine[canonical(a.Address)] = true
			}
		}
	}
	var sans []string
	for _, ip := range req.IPAddresses {
		if ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			return deny(name, ReasonSpecialAddress, "%s is a loopback, unspecified, link-local or multicast address, which no node serves under", ip)
		}
		sans = append(sans, ip.String())
	}
	for _, d := range req.DNSNames {
		if canonical(d) == "localhost" || strings.HasSuffix(canonical(d), ".localhost") {
			return deny(name, ReasonSpecialAddress, "%s names this host, whichever it is", d)
		}
		sans = append(sans, canonical(d))
	}
	for _, s := range sans {
		if others := slices.DeleteFunc(slices.Clone(owners[s]), func(o string) bool { return o == name }); len(others) > 0 {
			return deny(name, ReasonOtherNodeAddress, "%s is node %s's", s, strings.Join(others, ", "))
		}
		if api[s] && !controlPlane {
			return deny(name, ReasonAPIAddress, "the API is served under %s, and node %s is no control-plane node", s, name)
		}
		if !mine[s] {
			if young {
				return Decision{Action: Wait, NodeName: name, Reason: ReasonNotNodeAddress,
					Message: fmt.Sprintf("waiting for %s on Node %s", s, name)}
			}
			return deny(name, ReasonNotNodeAddress, "Node %s's status lists no address %s", name, s)
		}
	}
	return Decision{Action: Approve, NodeName: name, Reason: ReasonServingApproved,
		Message: fmt.Sprintf("approved by selfkube: serving certificate of node %s for %s", name, strings.Join(sans, ", "))}
}

// canonical is the form names and addresses are compared in: an IP's shortest form, a DNS
// name in lower case without a trailing dot.
func canonical(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// servingRequest checks that csr asks for exactly a kubelet serving certificate and
// returns the request and the node name it names (also, when it parses that far, with an
// error).
func servingRequest(csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, string, error) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "", fmt.Errorf("the request holds no PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("the certificate request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("the certificate request's signature is invalid: %v", err)
	}
	name, ok := strings.CutPrefix(req.Subject.CommonName, nodeUserPrefix)
	if !ok || name == "" {
		return nil, "", fmt.Errorf("common name %q, want %s<node name>", req.Subject.CommonName, nodeUserPrefix)
	}
	if !slices.Equal(req.Subject.Organization, []string{nodesGroup}) {
		return nil, name, fmt.Errorf("organization %v, want [%s]", req.Subject.Organization, nodesGroup)
	}
	if len(req.EmailAddresses)+len(req.URIs) > 0 {
		return nil, name, fmt.Errorf("a kubelet serving certificate names DNS names and IPs only")
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return nil, name, fmt.Errorf("the request names no DNS name or IP")
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return nil, name, fmt.Errorf("usage %q is not one of a serving certificate's", u)
		}
	}
	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth) {
		return nil, name, fmt.Errorf("usages %v lack %q", csr.Spec.Usages, certificatesv1.UsageServerAuth)
	}
	return req, name, nil
}
