// Package discovery is the joining node's side of token discovery: it fetches the public
// kube-public/cluster-info ConfigMap from an API server it does not trust yet, checks the
// bootstrapsigner's JWS signature over it with the bootstrap token's secret, checks the
// CA inside against the CA public key pins, and returns the server and CA to trust.
// It follows kubeadm's token discovery, so it works against kubeadm clusters too.
package discovery

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/selfkube/selfkube/internal/bootstrap"
)

// Sentinel errors; every error of this package about one of these cases wraps it.
var (
	// ErrNoSignature: cluster-info carries no signature for the token's ID.
	ErrNoSignature = errors.New("cluster-info is not signed for this token")
	// ErrSignatureMismatch: the signature does not match the token secret and content.
	ErrSignatureMismatch = errors.New("cluster-info signature does not match the token")
	// ErrCAHashMismatch: the CA in cluster-info matches none of the pins.
	ErrCAHashMismatch = errors.New("cluster CA does not match the pinned public key hash")
	// ErrMalformedKubeconfig: cluster-info's kubeconfig is missing or unusable.
	ErrMalformedKubeconfig = errors.New("cluster-info kubeconfig is malformed")
	// ErrMalformedPin: a CA pin is not "sha256:<64 hex characters>".
	ErrMalformedPin = errors.New("malformed CA public key pin")
	// ErrNoPins: no pins were given and skipping CA verification was not asked for.
	ErrNoPins = errors.New("no CA public key pin given")
)

// Options change how Verify and Fetch work.
type Options struct {
	// UnsafeSkipCAVerification accepts any CA in a correctly signed cluster-info without
	// checking it against pins. Anyone who knows the token can then impersonate the
	// control plane; the caller should warn about it.
	UnsafeSkipCAVerification bool
	// Timeout bounds Fetch including its retries; zero means DefaultTimeout.
	Timeout time.Duration
	// RetryInterval is the wait between Fetch attempts; zero means DefaultRetryInterval.
	RetryInterval time.Duration
	// Progress, when set, is told why Fetch is about to retry (e.g. status.Printer.Infof).
	Progress func(format string, args ...any)
}

// Cluster is what discovery establishes: the API server to talk to and the CA to trust.
type Cluster struct {
	// Server is the server URL from cluster-info, https://host:port.
	Server string
	// CAData is the PEM CA bundle from cluster-info.
	CAData []byte
	// CACerts are the parsed certificates of CAData.
	CACerts []*x509.Certificate
}

// ParsePins validates CA pins ("sha256:" and 64 hex characters, case-insensitive) and
// returns them normalized to lower case. Its errors wrap ErrMalformedPin.
func ParsePins(pins []string) ([]string, error) {
	out := make([]string, 0, len(pins))
	for _, p := range pins {
		algo, value, ok := strings.Cut(p, ":")
		if !ok {
			return nil, fmt.Errorf("%w %q: it has no hash type; give it as sha256:<hex>, as printed in the join command", ErrMalformedPin, p)
		}
		if !strings.EqualFold(algo, "sha256") {
			return nil, fmt.Errorf("%w %q: hash type %q is not supported, only sha256; give it as sha256:<hex>, as printed in the join command", ErrMalformedPin, p, algo)
		}
		b, err := hex.DecodeString(value)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w %q: the hash must be 64 hexadecimal characters (a SHA-256 of the CA's public key); copy it again from the join command", ErrMalformedPin, p)
		}
		out = append(out, bootstrap.CAHashPrefix+hex.EncodeToString(b))
	}
	return out, nil
}

// checkPins returns the normalized pins, or an error when there are none and the caller
// did not explicitly skip CA verification.
func checkPins(pins []string, opts Options) ([]string, error) {
	parsed, err := ParsePins(pins)
	if err != nil {
		return nil, err
	}
	if len(parsed) == 0 && !opts.UnsafeSkipCAVerification {
		return nil, fmt.Errorf("%w: pass --discovery-token-ca-cert-hash sha256:<hex> from the join command, or explicitly --discovery-token-unsafe-skip-ca-verification to trust whatever CA the endpoint presents", ErrNoPins)
	}
	return parsed, nil
}

// Verify checks a cluster-info ConfigMap fetched without TLS verification: its
// jws-kubeconfig-<id> signature over the kubeconfig value must match the token; the
// kubeconfig must name one cluster with an https server and inline CA data; the CA must
// match one of pins unless opts.UnsafeSkipCAVerification. It performs no I/O.
func Verify(cm *corev1.ConfigMap, token bootstrap.Token, pins []string, opts Options) (*Cluster, error) {
	pins, err := checkPins(pins, opts)
	if err != nil {
		return nil, err
	}
	if _, err := bootstrap.ParseToken(token.String()); err != nil {
		return nil, err
	}
	if cm == nil {
		return nil, fmt.Errorf("%w: no ConfigMap; check that the endpoint is a Kubernetes API server", ErrMalformedKubeconfig)
	}
	kubeconfig, ok := cm.Data[bootstrapapi.KubeConfigKey]
	if !ok {
		return nil, fmt.Errorf("%w: the ConfigMap has no %q key; the control plane has not published cluster-info correctly: inspect it on the control plane with `kubectl -n kube-public get configmap cluster-info -o yaml`", ErrMalformedKubeconfig, bootstrapapi.KubeConfigKey)
	}

	sigKey := bootstrapapi.JWSSignatureKeyPrefix + token.ID
	sig, ok := cm.Data[sigKey]
	if !ok {
		return nil, fmt.Errorf("%w: cluster-info has no %s key, so token ID %q is unknown, expired, deleted, or not allowed to sign, "+
			"or the controller-manager's bootstrapsigner has not signed it yet; wait a little, or create a new token on a control-plane node",
			ErrNoSignature, sigKey, token.ID)
	}
	want, err := jws.ComputeDetachedSignature(kubeconfig, token.ID, token.Secret)
	if err != nil {
		return nil, fmt.Errorf("computing the expected cluster-info signature for token ID %q: %w", token.ID, err)
	}
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return nil, fmt.Errorf("%w: the signature for token ID %q does not match; either the token's secret is wrong, "+
			"or cluster-info was tampered with on the way; check the token (copy the join command again) and the network path to the endpoint",
			ErrSignatureMismatch, token.ID)
	}

	cluster, err := parseKubeconfig([]byte(kubeconfig))
	if err != nil {
		return nil, err
	}
	if opts.UnsafeSkipCAVerification {
		return cluster, nil
	}
	var found []string
	for _, c := range cluster.CACerts {
		h := bootstrap.CAHash(c)
		if slices.Contains(pins, h) {
			return cluster, nil
		}
		found = append(found, h)
	}
	return nil, fmt.Errorf("%w: cluster-info's CA has public key hash %s, but the pins are %s; "+
		"check --discovery-token-ca-cert-hash against the join command printed by the control plane; if it is right, something between you and %s is impersonating the control plane",
		ErrCAHashMismatch, strings.Join(found, ", "), strings.Join(pins, ", "), cluster.Server)
}

// parseKubeconfig extracts the cluster from cluster-info's kubeconfig: the current
// context's cluster if there is one, otherwise the only cluster.
func parseKubeconfig(data []byte) (*Cluster, error) {
	fix := "the control plane has published a bad cluster-info: inspect it on the control plane with `kubectl -n kube-public get configmap cluster-info -o yaml`"
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; %s", ErrMalformedKubeconfig, err, fix)
	}
	var c *clientcmdapi.Cluster
	if ctx, ok := cfg.Contexts[cfg.CurrentContext]; ok && cfg.Clusters[ctx.Cluster] != nil {
		c = cfg.Clusters[ctx.Cluster]
	} else if len(cfg.Clusters) == 1 {
		for _, only := range cfg.Clusters {
			c = only
		}
	}
	if c == nil {
		return nil, fmt.Errorf("%w: it holds %d clusters and no current context that picks one; %s", ErrMalformedKubeconfig, len(cfg.Clusters), fix)
	}
	u, err := url.Parse(c.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: its server %q is not an https URL; %s", ErrMalformedKubeconfig, c.Server, fix)
	}
	if len(c.CertificateAuthorityData) == 0 {
		return nil, fmt.Errorf("%w: it has no certificate-authority-data; %s", ErrMalformedKubeconfig, fix)
	}
	certs, err := cert.ParseCertsPEM(c.CertificateAuthorityData)
	if err != nil {
		return nil, fmt.Errorf("%w: its certificate-authority-data: %v; %s", ErrMalformedKubeconfig, err, fix)
	}
	return &Cluster{Server: c.Server, CAData: c.CertificateAuthorityData, CACerts: certs}, nil
}
