package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var (
	testToken = Token{ID: "abcdef", Secret: "0123456789abcdef"}
	testNow   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func TestBuildSecret(t *testing.T) {
	secret, err := BuildSecret(TokenSpec{Token: testToken, Description: "join nodes"}, testNow)
	if err != nil {
		t.Fatalf("BuildSecret: %v", err)
	}
	want := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef", Namespace: "kube-system"},
		Type:       "bootstrap.kubernetes.io/token",
		Data: map[string][]byte{
			"token-id":                       []byte("abcdef"),
			"token-secret":                   []byte("0123456789abcdef"),
			"expiration":                     []byte("2026-03-02T12:00:00Z"),
			"usage-bootstrap-authentication": []byte("true"),
			"usage-bootstrap-signing":        []byte("true"),
			"auth-extra-groups":              []byte("system:bootstrappers:kubeadm:default-node-token"),
			"description":                    []byte("join nodes"),
		},
	}
	if diff := cmp.Diff(want, secret); diff != "" {
		t.Fatalf("BuildSecret (-want +got):\n%s", diff)
	}
}

func TestBuildSecretOptions(t *testing.T) {
	tests := []struct {
		name    string
		spec    TokenSpec
		check   func(t *testing.T, s *corev1.Secret)
		wantErr string
	}{
		{
			name: "explicit TTL, local clock written in UTC",
			spec: TokenSpec{Token: testToken, TTL: 90 * time.Minute},
			check: func(t *testing.T, s *corev1.Secret) {
				if got := string(s.Data["expiration"]); got != "2026-03-01T13:30:00Z" {
					t.Fatalf("expiration = %q", got)
				}
			},
		},
		{
			name: "never expires",
			spec: TokenSpec{Token: testToken, NeverExpires: true},
			check: func(t *testing.T, s *corev1.Secret) {
				if v, ok := s.Data["expiration"]; ok {
					t.Fatalf("expiration = %q, want none", v)
				}
			},
		},
		{
			name: "signing only, custom groups, no description",
			spec: TokenSpec{Token: testToken, Usages: []string{"signing"}, Groups: []string{"system:bootstrappers:a", "system:bootstrappers:b"}},
			check: func(t *testing.T, s *corev1.Secret) {
				if _, ok := s.Data["usage-bootstrap-authentication"]; ok {
					t.Fatal("authentication usage set")
				}
				if string(s.Data["usage-bootstrap-signing"]) != "true" {
					t.Fatal("signing usage not set")
				}
				if got := string(s.Data["auth-extra-groups"]); got != "system:bootstrappers:a,system:bootstrappers:b" {
					t.Fatalf("auth-extra-groups = %q", got)
				}
				if _, ok := s.Data["description"]; ok {
					t.Fatal("empty description stored")
				}
			},
		},
		{name: "negative TTL", spec: TokenSpec{Token: testToken, TTL: -time.Second}, wantErr: "negative"},
		{name: "TTL and never", spec: TokenSpec{Token: testToken, TTL: time.Hour, NeverExpires: true}, wantErr: "choose one"},
		{name: "unknown usage", spec: TokenSpec{Token: testToken, Usages: []string{"everything"}}, wantErr: "invalid bootstrap token usage"},
		{name: "bad group", spec: TokenSpec{Token: testToken, Groups: []string{"system:masters"}}, wantErr: `"system:masters" is invalid`},
		{name: "bad token", spec: TokenSpec{Token: Token{ID: "abcdef", Secret: "short"}}, wantErr: "invalid bootstrap token"},
		{name: "zero token", spec: TokenSpec{}, wantErr: "invalid bootstrap token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := BuildSecret(tt.spec, testNow.In(time.FixedZone("X", 3600)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("BuildSecret error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("BuildSecret: %v", err)
			}
			tt.check(t, s)
		})
	}
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if err := Create(ctx, client, TokenSpec{Token: testToken}, testNow); err != nil {
		t.Fatalf("Create: %v", err)
	}
	got, err := client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-abcdef", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting the created Secret: %v", err)
	}
	if string(got.Data["token-secret"]) != testToken.Secret {
		t.Fatalf("stored secret differs")
	}

	// Same ID again: refused, the stored secret is untouched.
	again := TokenSpec{Token: Token{ID: testToken.ID, Secret: "ffffffffffffffff"}}
	err = Create(ctx, client, again, testNow)
	if !errors.Is(err, ErrTokenExists) {
		t.Fatalf("second Create error = %v, want ErrTokenExists", err)
	}
	if strings.Contains(err.Error(), "ffffffffffffffff") {
		t.Fatalf("error %q echoes the secret", err)
	}
	got, _ = client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-abcdef", metav1.GetOptions{})
	if string(got.Data["token-secret"]) != testToken.Secret {
		t.Fatalf("second Create overwrote the Secret")
	}
}

func TestCreateAPIError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "bootstrap-token-abcdef", errors.New("nope"))
	})
	err := Create(context.Background(), client, TokenSpec{Token: testToken}, testNow)
	if !apierrors.IsForbidden(err) || errors.Is(err, ErrTokenExists) {
		t.Fatalf("Create error = %v, want the Forbidden error wrapped", err)
	}
	if !strings.Contains(err.Error(), "may create Secrets in kube-system") {
		t.Fatalf("Create error = %q, want advice", err)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(
		// Not a token: ignored.
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "kube-system"}, Type: corev1.SecretTypeOpaque},
		// A token whose name does not match its ID.
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-zzzzzz", Namespace: "kube-system"},
			Type:       "bootstrap.kubernetes.io/token",
			Data: map[string][]byte{
				"token-id": []byte("yyyyyy"), "token-secret": []byte("0123456789abcdef"),
				"expiration": []byte("tomorrow"),
			},
		},
	)
	specs := []TokenSpec{
		{Token: Token{ID: "bbbbbb", Secret: "bbbbbbbbbbbbbbbb"}, Description: "default"},
		{Token: Token{ID: "aaaaaa", Secret: "aaaaaaaaaaaaaaaa"}, NeverExpires: true, Usages: []string{"signing"}},
		{Token: Token{ID: "cccccc", Secret: "cccccccccccccccc"}, TTL: time.Hour},
	}
	for _, s := range specs {
		if err := Create(ctx, client, s, testNow); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}

	// Two hours later: cccccc has expired, bbbbbb has 22h left.
	infos, err := List(ctx, client, testNow.Add(2*time.Hour))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	exp := func(d time.Duration) *time.Time { t := testNow.Add(d); return &t }
	group := []string{DefaultGroup}
	want := []TokenInfo{
		{ID: "aaaaaa", Usages: []string{"signing"}, Groups: group},
		{ID: "bbbbbb", Expires: exp(24 * time.Hour), TTL: 22 * time.Hour, Usages: []string{"authentication", "signing"}, Groups: group, Description: "default"},
		{ID: "cccccc", Expires: exp(time.Hour), Expired: true, Usages: []string{"authentication", "signing"}, Groups: group},
		{ID: "yyyyyy", Problem: "its name should be bootstrap-token-yyyyyy; its expiration is not an RFC 3339 time"},
	}
	if diff := cmp.Diff(want, infos); diff != "" {
		t.Fatalf("List (-want +got):\n%s", diff)
	}
	printed := fmt.Sprintf("%+v", infos)
	for _, s := range []string{"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc", "0123456789abcdef"} {
		if strings.Contains(printed, s) {
			t.Fatalf("List output contains a secret: %s", printed)
		}
	}
}

func TestListAPIError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	if _, err := List(context.Background(), client, testNow); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("List error = %v, want the ServiceUnavailable error wrapped", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	a := Token{ID: "aaaaaa", Secret: "aaaaaaaaaaaaaaaa"}
	b := Token{ID: "bbbbbb", Secret: "bbbbbbbbbbbbbbbb"}
	for _, tok := range []Token{a, b} {
		if err := Create(ctx, client, TokenSpec{Token: tok}, testNow); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if err := Delete(ctx, client, a.ID); err != nil {
		t.Fatalf("Delete by ID: %v", err)
	}
	if err := Delete(ctx, client, b.String()); err != nil {
		t.Fatalf("Delete by token: %v", err)
	}
	infos, err := List(ctx, client, testNow)
	if err != nil || len(infos) != 0 {
		t.Fatalf("List after deleting everything = %+v, %v", infos, err)
	}

	err = Delete(ctx, client, a.String())
	if !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("deleting a missing token: error = %v, want ErrTokenNotFound", err)
	}
	if strings.Contains(err.Error(), a.Secret) {
		t.Fatalf("error %q echoes the secret", err)
	}
	if err := Delete(ctx, client, "nope"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("deleting a malformed ID: error = %v, want ErrInvalidToken", err)
	}
}

func TestDeleteAPIError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("delete", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	err := Delete(context.Background(), client, "abcdef")
	if !apierrors.IsServiceUnavailable(err) || errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("Delete error = %v, want the ServiceUnavailable error wrapped", err)
	}
}
