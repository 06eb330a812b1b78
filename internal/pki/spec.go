// Package pki makes and checks the cluster's certificates and keys.
//
// The certificates are a declarative list of Specs derived from the configuration (see
// Specs). Ensure converges a directory onto that list: it reuses what exists and fits,
// generates what is missing and refuses, naming the file and the difference, to touch
// anything that exists but does not fit. Every file is checked before any is written, so
// a failed run changes nothing.
//
// File names follow kubeadm's layout: ca.crt, apiserver.crt, front-proxy-ca.crt, sa.key,
// etcd/ca.crt, etcd/server.crt and so on, each certificate beside a .key of the same name.
package pki

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/selfkube/selfkube/internal/config"
)

// Dir is the asset-directory folder that holds the PKI.
const Dir = "tls"

// Names of the certificate authorities, relative to the PKI directory without extension.
const (
	CA           = "ca"
	FrontProxyCA = "front-proxy-ca"
	EtcdCA       = "etcd/ca"
)

// Names of the other specs.
const (
	APIServer              = "apiserver"
	APIServerKubeletClient = "apiserver-kubelet-client"
	APIServerEtcdClient    = "apiserver-etcd-client"
	FrontProxyClient       = "front-proxy-client"
	ServiceAccountKey      = "sa"
	EtcdServer             = "etcd/server"
	EtcdPeer               = "etcd/peer"
	EtcdHealthcheckClient  = "etcd/healthcheck-client"
)

// APIServerKubeletClientUser is the identity kube-apiserver presents to kubelets (logs,
// exec, port-forward, metrics).
//
// kubeadm puts this certificate in kubeadm:cluster-admins, which makes every request the
// API server sends to a kubelet cluster-admin. The kubelet only needs to authorize the
// API server for its own API, and does so with a SubjectAccessReview against the RBAC
// rules in the API. So the certificate carries no group at all, and the manifests bind
// this user to KubeletAPIAdminClusterRole, the built-in role that grants exactly
// nodes/proxy, nodes/log, nodes/stats, nodes/metrics (and the fine-grained node
// subresources): a stolen apiserver-kubelet-client key reaches kubelets, not the cluster.
const APIServerKubeletClientUser = "kube-apiserver-kubelet-client"

// KubeletAPIAdminClusterRole is the built-in ClusterRole the manifests bind
// APIServerKubeletClientUser to.
const KubeletAPIAdminClusterRole = "system:kubelet-api-admin"

// Kind says what a spec is for: it decides the key usages of its certificate.
type Kind int

const (
	// KindCA is a self-signed certificate authority.
	KindCA Kind = iota
	// KindServer is a serving certificate (ExtKeyUsage ServerAuth).
	KindServer
	// KindClient is a client certificate (ExtKeyUsage ClientAuth).
	KindClient
	// KindPeer is both a server and a client (etcd server and peer).
	KindPeer
	// KindKeyPair is a bare key pair written as <name>.key and <name>.pub (the
	// service-account signing key).
	KindKeyPair
)

func (k Kind) String() string {
	switch k {
	case KindCA:
		return "CA"
	case KindServer:
		return "serving"
	case KindClient:
		return "client"
	case KindPeer:
		return "peer"
	case KindKeyPair:
		return "key pair"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Spec declares one certificate (and its key) or one bare key pair.
type Spec struct {
	// Name is the file name relative to the PKI directory, without extension.
	Name string
	// Kind decides the key usages.
	Kind Kind
	// CA is the Name of the signing CA; empty for CAs and key pairs.
	CA string
	// CommonName and Organization form the subject: for client certificates they are
	// the user and groups the API server sees.
	CommonName   string
	Organization []string
	// DNSNames and IPs are the subject alternative names.
	DNSNames []string
	IPs      []net.IP
}

// Specs lists every certificate and key the configuration needs, CAs before the leaves
// they sign. The etcd certificates are left out when etcd is external.
func Specs(cfg *config.Config) ([]Spec, error) {
	c, n := &cfg.Cluster, &cfg.Node
	shared, err := APINames(c)
	if err != nil {
		return nil, err
	}
	api := sans(shared, []string{n.AdvertiseAddress, n.Name})

	specs := []Spec{
		{Name: CA, Kind: KindCA, CommonName: "kubernetes"},
		{Name: APIServer, Kind: KindServer, CA: CA, CommonName: "kube-apiserver", DNSNames: api.dns, IPs: api.ips},
		{Name: APIServerKubeletClient, Kind: KindClient, CA: CA, CommonName: APIServerKubeletClientUser},
		{Name: FrontProxyCA, Kind: KindCA, CommonName: "front-proxy-ca"},
		{Name: FrontProxyClient, Kind: KindClient, CA: FrontProxyCA, CommonName: "front-proxy-client"},
		{Name: ServiceAccountKey, Kind: KindKeyPair},
	}
	if c.Etcd.External != nil {
		return specs, nil
	}
	server := sans([]string{"localhost", "127.0.0.1", "::1", n.Name, n.AdvertiseAddress})
	peer := sans([]string{n.Name, n.AdvertiseAddress})
	return append(specs,
		Spec{Name: EtcdCA, Kind: KindCA, CommonName: "etcd-ca"},
		Spec{Name: EtcdServer, Kind: KindPeer, CA: EtcdCA, CommonName: n.Name, DNSNames: server.dns, IPs: server.ips},
		Spec{Name: EtcdPeer, Kind: KindPeer, CA: EtcdCA, CommonName: n.Name, DNSNames: peer.dns, IPs: peer.ips},
		Spec{Name: EtcdHealthcheckClient, Kind: KindClient, CA: EtcdCA, CommonName: "kube-etcd-healthcheck-client"},
		Spec{Name: APIServerEtcdClient, Kind: KindClient, CA: EtcdCA, CommonName: "kube-apiserver-etcd-client"},
	), nil
}

// APINames are the names and addresses every apiserver of the cluster serves under,
// whichever node it runs on: the kubernetes Service's names and address, the control-plane
// endpoint's host, localhost and the configured extra SANs (apiServer.certSANs). A node's
// own name and address come on top in its apiserver's certificate. No other certificate the
// cluster CA signs may carry one of them: a client that trusts the CA would take its holder
// for the API (see the approver of kubelet serving certificates).
func APINames(c *config.ClusterConfiguration) ([]string, error) {
	apiIP, err := firstIP(c.Networking.ServiceSubnet)
	if err != nil {
		return nil, fmt.Errorf("finding the API service address: %w", err)
	}
	domain := strings.TrimSuffix(c.Networking.DNSDomain, ".")
	names := []string{
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + domain,
		apiIP.String(), c.EndpointHost(), "localhost", "127.0.0.1",
	}
	return append(names, c.APIServer.CertSANs...), nil
}

// firstIP is the first usable address of a CIDR: the address of the kubernetes Service.
func firstIP(cidr string) (net.IP, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, err
	}
	a := p.Masked().Addr().Next()
	if !a.IsValid() || !p.Contains(a) {
		return nil, fmt.Errorf("%s has no address to give the API", cidr)
	}
	return net.IP(a.AsSlice()), nil
}

type sanList struct {
	dns []string
	ips []net.IP
}

// sans sorts names into IP and DNS SANs, in order, dropping empties and duplicates.
func sans(lists ...[]string) sanList {
	var out sanList
	seen := map[string]bool{}
	for _, list := range lists {
		for _, s := range list {
			if ip := net.ParseIP(s); ip != nil {
				if key := ip.String(); !seen[key] {
					seen[key] = true
					out.ips = append(out.ips, ip)
				}
				continue
			}
			s = strings.ToLower(s)
			if s != "" && !seen[s] {
				seen[s] = true
				out.dns = append(out.dns, s)
			}
		}
	}
	return out
}
