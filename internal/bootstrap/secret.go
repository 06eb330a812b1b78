package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/selfkube/selfkube/internal/apply"
)

// DefaultTTL is how long a token lives when TokenSpec.TTL is zero.
const DefaultTTL = 24 * time.Hour

// DefaultGroup is the extra group kubeadm gives node-joining tokens; the RBAC that lets
// kubelets bootstrap (CSR creation and auto-approval) is bound to it.
const DefaultGroup = "system:bootstrappers:kubeadm:default-node-token"

// Token usages.
const (
	UsageAuthentication = "authentication"
	UsageSigning        = "signing"
)

// DefaultUsages are the usages of a node-joining token: authenticate the kubelet's
// bootstrap, and sign cluster-info for discovery.
var DefaultUsages = []string{UsageAuthentication, UsageSigning}

// Sentinel errors of the token operations.
var (
	ErrTokenExists   = errors.New("bootstrap token already exists")
	ErrTokenNotFound = errors.New("bootstrap token not found")
)

// TokenSpec describes a token to store.
type TokenSpec struct {
	Token Token
	// TTL is how long the token is valid; zero means DefaultTTL. Negative is an error.
	TTL time.Duration
	// NeverExpires stores the token without an expiration. It must be asked for
	// explicitly and cannot be combined with a TTL.
	NeverExpires bool
	// Usages default to DefaultUsages.
	Usages []string
	// Groups are the extra groups the token authenticates as; they default to
	// DefaultGroup. Each must match system:bootstrappers:[a-z0-9:-]*.
	Groups []string
	// Description is free text shown by List.
	Description string
}

// BuildSecret returns the kube-system/bootstrap-token-<id> Secret for spec, with the
// expiration counted from now. It performs no I/O.
func BuildSecret(spec TokenSpec, now time.Time) (*corev1.Secret, error) {
	if err := ValidateTokenID(spec.Token.ID); err != nil {
		return nil, err
	}
	if _, err := ParseToken(spec.Token.String()); err != nil {
		return nil, err
	}
	if spec.TTL < 0 {
		return nil, fmt.Errorf("token TTL %s is negative; give a positive TTL, or ask explicitly for a token that never expires", spec.TTL)
	}
	if spec.NeverExpires && spec.TTL != 0 {
		return nil, fmt.Errorf("a token cannot both expire after %s and never expire; choose one", spec.TTL)
	}
	usages := spec.Usages
	if len(usages) == 0 {
		usages = DefaultUsages
	}
	if err := bootstraputil.ValidateUsages(usages); err != nil {
		return nil, fmt.Errorf("token usages: %w", err)
	}
	groups := spec.Groups
	if len(groups) == 0 {
		groups = []string{DefaultGroup}
	}
	for _, g := range groups {
		if err := bootstraputil.ValidateBootstrapGroupName(g); err != nil {
			return nil, fmt.Errorf("token groups: %w", err)
		}
	}

	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:          []byte(spec.Token.ID),
		bootstrapapi.BootstrapTokenSecretKey:      []byte(spec.Token.Secret),
		bootstrapapi.BootstrapTokenExtraGroupsKey: []byte(strings.Join(groups, ",")),
	}
	if !spec.NeverExpires {
		ttl := spec.TTL
		if ttl == 0 {
			ttl = DefaultTTL
		}
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(now.Add(ttl).UTC().Format(time.RFC3339))
	}
	for _, u := range usages {
		data[bootstrapapi.BootstrapTokenUsagePrefix+u] = []byte("true")
	}
	if spec.Description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(spec.Description)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: SecretName(spec.Token.ID), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		Data:       data,
	}, nil
}

// Create stores a new token. A token with the same ID is never overwritten: that is an
// error wrapping ErrTokenExists.
func Create(ctx context.Context, client kubernetes.Interface, spec TokenSpec, now time.Time) error {
	secret, err := BuildSecret(spec, now)
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Secrets(secret.Namespace).Create(ctx, secret, metav1.CreateOptions{FieldManager: apply.FieldManager})
	switch {
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("creating Secret %s/%s: %w: token ID %q is taken; generate a new token or delete the old one first",
			secret.Namespace, secret.Name, ErrTokenExists, spec.Token.ID)
	case err != nil:
		return fmt.Errorf("creating Secret %s/%s for bootstrap token %q: %w; check the connection to the API server and that the client may create Secrets in kube-system",
			secret.Namespace, secret.Name, spec.Token.ID, err)
	}
	return nil
}

// TokenInfo is what List shows about a token. It never holds the secret.
type TokenInfo struct {
	ID string
	// Expires is nil for a token that never expires.
	Expires *time.Time
	// TTL is the time left until Expires (zero once expired or when it never expires).
	TTL         time.Duration
	Expired     bool
	Usages      []string
	Groups      []string
	Description string
	// Problem is set when the Secret is not a usable token (for example its name does
	// not match its ID, or its expiration cannot be parsed); the API server ignores it.
	Problem string
}

// List returns every bootstrap token in kube-system, sorted by ID, with times counted
// from now.
func List(ctx context.Context, client kubernetes.Interface, now time.Time) ([]TokenInfo, error) {
	selector := fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String()
	list, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing bootstrap token Secrets in %s: %w; check the connection to the API server and that the client may list Secrets there",
			metav1.NamespaceSystem, err)
	}
	var infos []TokenInfo
	for i := range list.Items {
		s := &list.Items[i]
		if s.Type != bootstrapapi.SecretTypeBootstrapToken {
			continue
		}
		infos = append(infos, tokenInfo(s, now))
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	return infos, nil
}

func tokenInfo(s *corev1.Secret, now time.Time) TokenInfo {
	info := TokenInfo{
		ID:          string(s.Data[bootstrapapi.BootstrapTokenIDKey]),
		Description: string(s.Data[bootstrapapi.BootstrapTokenDescriptionKey]),
	}
	var problems []string
	if !bootstraputil.IsValidBootstrapTokenID(info.ID) {
		problems = append(problems, "its token-id is not a valid token ID")
	} else if s.Name != SecretName(info.ID) {
		problems = append(problems, fmt.Sprintf("its name should be %s", SecretName(info.ID)))
	}
	if len(s.Data[bootstrapapi.BootstrapTokenSecretKey]) != bootstrapapi.BootstrapTokenSecretBytes {
		problems = append(problems, "its token-secret is not 16 characters")
	}
	if exp, ok := s.Data[bootstrapapi.BootstrapTokenExpirationKey]; ok {
		t, err := time.Parse(time.RFC3339, string(exp))
		if err != nil {
			problems = append(problems, "its expiration is not an RFC 3339 time")
		} else {
			info.Expires = &t
			if now.Before(t) {
				info.TTL = t.Sub(now)
			} else {
				info.Expired = true
			}
		}
	}
	for k, v := range s.Data {
		if u, ok := strings.CutPrefix(k, bootstrapapi.BootstrapTokenUsagePrefix); ok && string(v) == "true" {
			info.Usages = append(info.Usages, u)
		}
	}
	sort.Strings(info.Usages)
	for _, g := range strings.Split(string(s.Data[bootstrapapi.BootstrapTokenExtraGroupsKey]), ",") {
		if g = strings.TrimSpace(g); g != "" {
			info.Groups = append(info.Groups, g)
		}
	}
	info.Problem = strings.Join(problems, "; ")
	return info
}

// Delete removes a token given by its ID or as a full token. A token that does not
// exist is an error wrapping ErrTokenNotFound.
func Delete(ctx context.Context, client kubernetes.Interface, tokenOrID string) error {
	id, err := ParseTokenOrID(tokenOrID)
	if err != nil {
		return err
	}
	name := SecretName(id)
	err = client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("deleting bootstrap token %q: %w (no Secret %s/%s); list the tokens to see which exist",
			id, ErrTokenNotFound, metav1.NamespaceSystem, name)
	case err != nil:
		return fmt.Errorf("deleting Secret %s/%s for bootstrap token %q: %w; check the connection to the API server and that the client may delete Secrets in kube-system",
			metav1.NamespaceSystem, name, id, err)
	}
	return nil
}
