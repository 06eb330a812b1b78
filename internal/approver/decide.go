// Package approver is selfkube's approver of kubelet certificates: the client certificates
// requested with a bootstrap token (the TLS bootstrap of a joining node: Decide) and the
// kubelets' serving certificates (DecideServing, in serving.go).
//
// In a self-hosted cluster a node identity is worth more than in kubeadm's: the Node
// authorizer lets system:node:<name> read the Secrets of the pods bound to that node, and on
// a control-plane node those hold the control plane's keys. Kubernetes' own approver (the
// "nodeclient" RBAC rule) approves any system:node:<name> for any bootstrap token, so a
// worker's join token could obtain a control-plane node's identity. This approver replaces
// that rule for bootstrap tokens. It approves a bootstrap CSR only for a name that no Node
// has and that no bootstrap token was given since a Node of that name was last deleted
// (the ledger), and denies every other bootstrap CSR with a reason. Renewals by a node of its own certificate are not its business (the stock
// "selfnodeclient" rule approves those), and control-plane nodes never come this way: their
// kubelet certificate is issued by `selfkube join --control-plane`, which holds the CA.
//
// Decide and DecideServing are the whole policy, pure functions; Controller feeds them
// from informers.
package approver

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Group every bootstrap-token user is in, whatever its extra groups.
const BootstrapGroup = "system:bootstrappers"

// Names of a kubelet client certificate.
const (
	nodeUserPrefix = "system:node:"
	nodesGroup     = "system:nodes"
)

// Action is what to do with a CSR.
type Action int

const (
	// Skip leaves the CSR alone: not a bootstrap request for a kubelet client
	// certificate, or already decided.
	Skip Action = iota
	// Approve approves it.
	Approve
	// Deny denies it (final: a denied CSR is never signed).
	Deny
	// Wait decides nothing yet: the CSR is looked at again shortly.
	Wait
)

func (a Action) String() string {
	switch a {
	case Approve:
		return "Approve"
	case Deny:
		return "Deny"
	case Wait:
		return "Wait"
	default:
		return "Skip"
	}
}

// Reasons of a decision, as the CSR condition's reason and the Event's.
const (
	ReasonApproved    = "SelfkubeNewNode"
	ReasonMalformed   = "NotANodeClientCertificate"
	ReasonNodeExists  = "NodeNameTaken"
	ReasonNameIssued  = "NodeNameAlreadyIssued"
	ReasonInvalidName = "InvalidNodeName"
)

// Known is what the cluster knows about node names.
type Known struct {
	// Node reports whether a Node of that name exists.
	Node func(name string) bool
	// Issued reports whether a bootstrap token was already given a certificate for that
	// name (the approver's ledger), and for which CSR.
	Issued func(name string) (csr string, ok bool)
}

// Decision is the verdict on one CSR.
type Decision struct {
	Action Action
	// NodeName is the node the CSR asks to be (when it parses).
	NodeName string
	Reason   string
	Message  string
}

// Decide is the approval policy for one CSR.
func Decide(csr *certificatesv1.CertificateSigningRequest, known Known) Decision {
	if csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName ||
		!slices.Contains(csr.Spec.Groups, BootstrapGroup) || decided(csr) {
		return Decision{Action: Skip}
	}
	name, err := nodeClientName(csr)
	if err != nil {
		return Decision{Action: Deny, Reason: ReasonMalformed,
			Message: fmt.Sprintf("denied by selfkube: %v; a bootstrap token may only request a new node's kubelet client certificate", err)}
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return Decision{Action: Deny, NodeName: name, Reason: ReasonInvalidName,
			Message: fmt.Sprintf("denied by selfkube: %q is not a valid node name: %s", name, strings.Join(errs, "; "))}
	}
	if known.Node(name) {
		return Decision{Action: Deny, NodeName: name, Reason: ReasonNodeExists,
			Message: fmt.Sprintf("denied by selfkube: node %s exists, and a bootstrap token cannot obtain an existing node's identity; "+
				"join the new machine under another name (--node-name), or, if %s is being replaced, `kubectl delete node %s` first", name, name, name)}
	}
	if prior, ok := known.Issued(name); ok && prior != csr.Name {
		return Decision{Action: Deny, NodeName: name, Reason: ReasonNameIssued,
			Message: fmt.Sprintf("denied by selfkube: a bootstrap token already obtained a certificate for node %s (CSR %s), "+
				"and no Node of that name was deleted since; join the new machine under another name (--node-name). "+
				"If that CSR was not yours, its holder has the name: find out who before you give it out again by removing it from "+
				"kube-system/%s", name, prior, LedgerName)}
	}
	return Decision{Action: Approve, NodeName: name, Reason: ReasonApproved,
		Message: fmt.Sprintf("approved by selfkube: client certificate of the new node %s, requested by %s", name, csr.Spec.Username)}
}

// decided reports whether csr is approved or denied already.
func decided(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// nodeClientName checks that csr asks for exactly a kubelet client certificate and returns
// the node name it asks for.
func nodeClientName(csr *certificatesv1.CertificateSigningRequest) (string, error) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return "", fmt.Errorf("the request holds no PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("the certificate request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return "", fmt.Errorf("the certificate request's signature is invalid: %v", err)
	}
	if !slices.Equal(req.Subject.Organization, []string{nodesGroup}) {
		return "", fmt.Errorf("organization %v, want [%s]", req.Subject.Organization, nodesGroup)
	}
	if len(req.DNSNames)+len(req.EmailAddresses)+len(req.IPAddresses)+len(req.URIs) > 0 {
		return "", fmt.Errorf("a client certificate has no subject alternative names")
	}
	name, ok := strings.CutPrefix(req.Subject.CommonName, nodeUserPrefix)
	if !ok || name == "" {
		return "", fmt.Errorf("common name %q, want %s<node name>", req.Subject.CommonName, nodeUserPrefix)
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return "", fmt.Errorf("usage %q is not one of a client certificate's", u)
		}
	}
	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageClientAuth) {
		return "", fmt.Errorf("usages %v lack %q", csr.Spec.Usages, certificatesv1.UsageClientAuth)
	}
	return name, nil
}
