package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/manifests"
)

// Defaults of Options.
const (
	DefaultTimeout       = 5 * time.Minute
	DefaultRetryInterval = 5 * time.Second
	requestTimeout       = 10 * time.Second
	maxBody              = 4 << 20
)

// Sentinel errors of Fetch, in addition to those of Verify.
var (
	// ErrUnreachable: no TLS connection to the endpoint could be made.
	ErrUnreachable = errors.New("API server endpoint is unreachable")
	// ErrClusterInfoNotFound: the endpoint has no kube-public/cluster-info (yet).
	ErrClusterInfoNotFound = errors.New("cluster-info not found")
	// ErrAccessDenied: the endpoint refused the anonymous request.
	ErrAccessDenied = errors.New("anonymous access to cluster-info denied")
	// ErrUnexpectedResponse: any other answer than the ConfigMap.
	ErrUnexpectedResponse = errors.New("unexpected response from the API server")
	// ErrTLSVerification: the endpoint's serving certificate is not valid under the CA
	// from cluster-info.
	ErrTLSVerification = errors.New("API server certificate is not trusted by the cluster-info CA")
	// ErrClusterInfoChanged: the second, TLS-verified fetch returned other content.
	ErrClusterInfoChanged = errors.New("cluster-info changed between the unverified and the verified fetch")
	// ErrTimeout: Fetch gave up; the error also wraps the last attempt's error.
	ErrTimeout = errors.New("discovery timed out")
)

// terminal errors are not retried: waiting does not fix them.
var terminal = []error{
	ErrSignatureMismatch, ErrCAHashMismatch, ErrMalformedKubeconfig, ErrMalformedPin, ErrNoPins,
	ErrTLSVerification, ErrClusterInfoChanged, bootstrap.ErrInvalidToken,
}

// ClusterInfoPath is the API path of the cluster-info ConfigMap.
const ClusterInfoPath = "/api/v1/namespaces/" + metav1.NamespacePublic + "/configmaps/" + bootstrapapi.ConfigMapClusterInfo

// Fetch discovers the cluster at endpoint (host:port or https://host:port):
//
//  1. GET cluster-info anonymously over TLS without verifying the server (the document
//     is trusted through its signature, not the connection);
//  2. Verify it with the token and pins;
//  3. GET it again over TLS verified against the CA it contains, and require the same
//     kubeconfig, so the endpoint proves it holds a key certified by that CA.
//
// It retries while the answer may still change on its own (no signature yet, no
// cluster-info yet, access denied, endpoint unreachable, server errors) until
// opts.Timeout; the timeout error wraps ErrTimeout and the last error. Failed
// verification is returned at once.
func Fetch(ctx context.Context, endpoint string, token bootstrap.Token, pins []string, opts Options) (*Cluster, error) {
	if _, err := checkPins(pins, opts); err != nil {
		return nil, err
	}
	if _, err := bootstrap.ParseToken(token.String()); err != nil {
		return nil, err
	}
	server, err := kubeconfig.NormalizeServer(endpoint)
	if err != nil {
		return nil, err
	}
	timeout, interval := opts.Timeout, opts.RetryInterval
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if interval <= 0 {
		interval = DefaultRetryInterval
	}
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var last error
	for {
		cluster, err := attempt(deadline, server, token, pins, opts)
		if err == nil {
			return cluster, nil
		}
		// An attempt cut short by the deadline says nothing new; keep the one before.
		if deadline.Err() == nil || last == nil {
			last = err
		}
		for _, t := range terminal {
			if errors.Is(err, t) {
				return nil, fmt.Errorf("discovering the cluster at %s: %w", server, err)
			}
		}
		if deadline.Err() == nil {
			if opts.Progress != nil {
				opts.Progress("cluster-info from %s not usable yet, retrying in %s: %v", server, interval, err)
			}
			t := time.NewTimer(interval)
			select {
			case <-deadline.Done():
				t.Stop()
			case <-t.C:
				continue
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("discovering the cluster at %s: %w; last error: %w", server, ctx.Err(), last)
		}
		return nil, fmt.Errorf("%w after %s at %s; last error: %w", ErrTimeout, timeout, server, last)
	}
}

// attempt is one unverified fetch, verification and verified re-fetch.
func attempt(ctx context.Context, server string, token bootstrap.Token, pins []string, opts Options) (*Cluster, error) {
	insecure := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // trusted through the JWS signature, then re-fetched verified
	first, err := get(ctx, server, insecure)
	if err != nil {
		return nil, err
	}
	cluster, err := Verify(first, token, pins, opts)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, c := range cluster.CACerts {
		roots.AddCert(c)
	}
	second, err := get(ctx, server, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	if second.Data[bootstrapapi.KubeConfigKey] != first.Data[bootstrapapi.KubeConfigKey] {
		return nil, fmt.Errorf("%w: the kubeconfig differs; something between you and %s may be tampering with the traffic, or cluster-info was just updated: run the join again",
			ErrClusterInfoChanged, server)
	}
	return cluster, nil
}

// get fetches cluster-info anonymously from server with the given TLS configuration.
func get(ctx context.Context, server string, tlsConfig *tls.Config) (*corev1.ConfigMap, error) {
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: requestTimeout,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: requestTimeout}

	url := server + ClusterInfoPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("building the request for %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("%w: GET %s: %v; the endpoint is not serving with a certificate from the cluster's CA: check that it is the API server itself and not a proxy that terminates TLS",
				ErrTLSVerification, url, err)
		}
		return nil, fmt.Errorf("%w: GET %s: %v; check the address and port, that the control plane is running, and that no firewall blocks the port",
			ErrUnreachable, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer to GET %s: %v; check the network path to the endpoint", ErrUnreachable, url, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%w: GET %s answered with more than %d bytes; check that the endpoint is a Kubernetes API server", ErrUnexpectedResponse, url, maxBody)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: GET %s: %s; the control plane has not published cluster-info yet (selfkube init applies it in its apply phase): wait for init there to get that far, or check with `kubectl -n kube-public get configmap cluster-info`",
			ErrClusterInfoNotFound, url, statusMessage(resp, body))
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%w: GET %s: %s; the API server needs anonymous authentication enabled and the %s Role and RoleBinding in %s (selfkube init applies them in its apply phase): wait for init there to get that far, or check with `kubectl -n kube-public get role,rolebinding`",
			ErrAccessDenied, url, statusMessage(resp, body), manifests.ClusterInfoRBACName, metav1.NamespacePublic)
	default:
		return nil, fmt.Errorf("%w: GET %s: %s; check that the endpoint is a healthy Kubernetes API server",
			ErrUnexpectedResponse, url, statusMessage(resp, body))
	}
	var cm corev1.ConfigMap
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&cm); err != nil {
		return nil, fmt.Errorf("%w: GET %s: decoding the ConfigMap: %v; check that the endpoint is a Kubernetes API server", ErrUnexpectedResponse, url, err)
	}
	if cm.Kind != "" && cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("%w: GET %s returned a %s, not a ConfigMap; check that the endpoint is a Kubernetes API server", ErrUnexpectedResponse, url, cm.Kind)
	}
	return &cm, nil
}

// statusMessage is the HTTP status plus the message of a metav1.Status body, if any.
func statusMessage(resp *http.Response, body []byte) string {
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return fmt.Sprintf("%s (%s)", resp.Status, st.Message)
	}
	return resp.Status
}
