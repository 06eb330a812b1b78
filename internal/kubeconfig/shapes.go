package kubeconfig

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The kubeconfig shapes besides Build's client-certificate one. Each is a pure function:
// the server is normalized (NormalizeServer), the output is deterministic, so writing or
// applying it again changes nothing.

// Names in the kubelet's bootstrap kubeconfig (kubeadm's, so the files look alike).
const (
	bootstrapUser    = "tls-bootstrap-token-user"
	bootstrapContext = "tls-bootstrap"
)

// serviceAccountName names the cluster, user and context of ForServiceAccount, and is the
// namespace of its context (kubeadm's kube-proxy kubeconfig names them so).
const serviceAccountName = "default"

// NormalizeServer turns "host:port" or "https://host:port" into "https://host:port"
// (port 443 when none is given). Anything else (another scheme, a path, a user) is an
// error.
func NormalizeServer(server string) (string, error) {
	s := server
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("API server address %q: %w; give it as host:port or https://host:port", server, err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("API server address %q must use https; give it as host:port or https://host:port", server)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("API server address %q has no host; give it as host:port or https://host:port", server)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("API server address %q must be only a host and port; give it as host:port or https://host:port", server)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "443")
	}
	return "https://" + u.Host, nil
}

// ClusterOnly is a kubeconfig with one cluster, named "" as kubeadm names it, for server
// and the CA bundle ca, and no user or context: the public discovery document that
// cluster-info carries. ca is embedded as given.
func ClusterOnly(server string, ca []byte) ([]byte, error) {
	server, err := NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	return write(kc, "the cluster-only kubeconfig")
}

// ForToken is a kubeconfig that authenticates with a bearer token to server, trusting the
// CA bundle ca: the kubelet's bootstrap kubeconfig, with a bootstrap token.
func ForToken(server string, ca []byte, token string) ([]byte, error) {
	server, err := NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("a token kubeconfig for %s needs a token", server)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[ClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	kc.AuthInfos[bootstrapUser] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[bootstrapContext] = &clientcmdapi.Context{Cluster: ClusterName, AuthInfo: bootstrapUser}
	kc.CurrentContext = bootstrapContext
	return write(kc, "the token kubeconfig")
}

// ForServiceAccount is a kubeconfig for a pod: it trusts the CA in caFile and
// authenticates with the token in tokenFile (the pod's service-account files, which the
// kubelet rotates), and defaults to the namespace "default".
func ForServiceAccount(server, caFile, tokenFile string) ([]byte, error) {
	server, err := NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	if caFile == "" || tokenFile == "" {
		return nil, fmt.Errorf("a service-account kubeconfig for %s needs the CA file and the token file", server)
	}
	const name = serviceAccountName
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{TokenFile: tokenFile}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: name}
	kc.CurrentContext = name
	return write(kc, "the service-account kubeconfig")
}

func write(kc *clientcmdapi.Config, what string) ([]byte, error) {
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", what, err)
	}
	return data, nil
}
