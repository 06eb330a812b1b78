package bootstrap

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/client-go/util/cert"

	"github.com/selfkube/selfkube/internal/kubeconfig"
)

// CAHashPrefix is the only hash format of a CA pin.
const CAHashPrefix = "sha256:"

// CAHash is the pin of a CA certificate in kubeadm's format: "sha256:" and the lowercase
// hex SHA-256 of the certificate's DER-encoded SubjectPublicKeyInfo. It pins the key, so
// a CA re-issued with the same key keeps its pin.
func CAHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return CAHashPrefix + hex.EncodeToString(sum[:])
}

// CAHashes returns the pin of every certificate in a PEM bundle, in order.
func CAHashes(caPEM []byte) ([]string, error) {
	certs, err := cert.ParseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing the cluster CA certificate: %w; pass the PEM of the cluster CA (ca.crt)", err)
	}
	hashes := make([]string, 0, len(certs))
	for _, c := range certs {
		hashes = append(hashes, CAHash(c))
	}
	return hashes, nil
}

// JoinCommand renders the command that joins a node:
//
//	selfkube join <host:port> --token <id.secret> --discovery-token-ca-cert-hash sha256:<hex>
//
// with one hash flag per certificate in caCertPEM. endpoint is host:port or
// https://host:port. The result contains the token's secret.
func JoinCommand(endpoint string, token Token, caCertPEM []byte) (string, error) {
	server, err := kubeconfig.NormalizeServer(endpoint)
	if err != nil {
		return "", err
	}
	if _, err := ParseToken(token.String()); err != nil {
		return "", err
	}
	hashes, err := CAHashes(caCertPEM)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "selfkube join %s --token %s", strings.TrimPrefix(server, "https://"), token)
	for _, h := range hashes {
		fmt.Fprintf(&b, " --discovery-token-ca-cert-hash %s", h)
	}
	return b.String(), nil
}
