// Package bootstrap manages the cluster side of joining nodes: bootstrap tokens stored as
// kube-system/bootstrap-token-<id> Secrets, the public kube-public/cluster-info ConfigMap
// with the RBAC that lets anonymous clients read it, and the join command that carries a
// token and the CA's public key pin. Everything is kubeadm-compatible: a stock
// `kubeadm join` can use a token created here, and `selfkube join` can use one created by
// `kubeadm token create`.
package bootstrap

import (
	"errors"
	"fmt"
	"strings"

	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// ErrInvalidToken is wrapped by every error about a malformed token or token ID.
var ErrInvalidToken = errors.New("invalid bootstrap token")

// Token is a bootstrap token: a public ID and a secret, written "ID.SECRET".
// The ID names the Secret and appears in logs; the secret authenticates and signs.
type Token struct {
	ID     string
	Secret string
}

// GenerateToken returns a new random token from crypto/rand.
func GenerateToken() (Token, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("generating a bootstrap token: %w; check that the system's random source is available", err)
	}
	return ParseToken(s)
}

// ParseToken parses and validates "ID.SECRET" ([a-z0-9]{6}.[a-z0-9]{16}). Its errors
// wrap ErrInvalidToken and never contain the secret.
func ParseToken(s string) (Token, error) {
	id, secret, ok := strings.Cut(s, ".")
	if !ok {
		return Token{}, fmt.Errorf("%w: it must have the form ID.SECRET (6 and 16 characters of a-z and 0-9, joined by a dot), but it has no dot; pass the whole token that the control plane printed", ErrInvalidToken)
	}
	if strings.Contains(secret, ".") {
		return Token{}, fmt.Errorf("%w: it must have the form ID.SECRET with exactly one dot; pass the whole token that the control plane printed", ErrInvalidToken)
	}
	if err := ValidateTokenID(id); err != nil {
		return Token{}, err
	}
	if len(secret) != bootstrapapi.BootstrapTokenSecretBytes {
		return Token{}, fmt.Errorf("%w: the secret (after the dot) must be %d characters, it has %d; pass the whole token that the control plane printed",
			ErrInvalidToken, bootstrapapi.BootstrapTokenSecretBytes, len(secret))
	}
	if !bootstraputil.IsValidBootstrapToken(s) {
		return Token{}, fmt.Errorf("%w: the secret (after the dot) may only contain the characters a-z and 0-9; pass the whole token that the control plane printed", ErrInvalidToken)
	}
	return Token{ID: id, Secret: secret}, nil
}

// ValidateTokenID checks a token ID ([a-z0-9]{6}). Its errors wrap ErrInvalidToken.
func ValidateTokenID(id string) error {
	if len(id) != bootstrapapi.BootstrapTokenIDBytes {
		return fmt.Errorf("%w: the token ID (before the dot) must be %d characters, it has %d; list the tokens to find the right ID",
			ErrInvalidToken, bootstrapapi.BootstrapTokenIDBytes, len(id))
	}
	if !bootstraputil.IsValidBootstrapTokenID(id) {
		return fmt.Errorf("%w: the token ID (before the dot) may only contain the characters a-z and 0-9; list the tokens to find the right ID", ErrInvalidToken)
	}
	return nil
}

// ParseTokenOrID accepts either a full token or only its ID and returns the ID.
// Its errors wrap ErrInvalidToken and never contain a secret.
func ParseTokenOrID(s string) (string, error) {
	if strings.Contains(s, ".") {
		t, err := ParseToken(s)
		if err != nil {
			return "", err
		}
		return t.ID, nil
	}
	if err := ValidateTokenID(s); err != nil {
		return "", err
	}
	return s, nil
}

// String returns the full token, "ID.SECRET". It is a credential: print it only where
// the user asked for it (the join command), never in logs.
func (t Token) String() string {
	return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret)
}

// SecretName is the name of the Secret in kube-system that stores a token.
func SecretName(id string) string {
	return bootstraputil.BootstrapTokenSecretName(id)
}
