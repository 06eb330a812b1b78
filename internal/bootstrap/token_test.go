package bootstrap

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestParseToken(t *testing.T) {
	const secret = "0123456789abcdef"
	tests := []struct {
		name    string
		in      string
		want    Token
		wantErr string // substring; empty means success
	}{
		{name: "valid", in: "abcdef." + secret, want: Token{ID: "abcdef", Secret: secret}},
		{name: "valid digits only", in: "012345.0123456789012345", want: Token{ID: "012345", Secret: "0123456789012345"}},
		{name: "empty", in: "", wantErr: "has no dot"},
		{name: "no dot", in: "abcdef" + secret, wantErr: "has no dot"},
		{name: "two dots", in: "abcdef." + secret + ".x", wantErr: "exactly one dot"},
		{name: "short id", in: "abcde." + secret, wantErr: "must be 6 characters, it has 5"},
		{name: "long id", in: "abcdefg." + secret, wantErr: "must be 6 characters, it has 7"},
		{name: "upper-case id", in: "ABCDEF." + secret, wantErr: "token ID (before the dot) may only contain"},
		{name: "short secret", in: "abcdef.0123456789abcde", wantErr: "must be 16 characters, it has 15"},
		{name: "long secret", in: "abcdef.0123456789abcdefg", wantErr: "must be 16 characters, it has 17"},
		{name: "upper-case secret", in: "abcdef.0123456789ABCDEF", wantErr: "secret (after the dot) may only contain"},
		{name: "symbol in secret", in: "abcdef.0123456789abcde-", wantErr: "secret (after the dot) may only contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseToken: %v", err)
				}
				if got != tt.want {
					t.Fatalf("ParseToken = %+v, want %+v", got, tt.want)
				}
				if got.String() != tt.in {
					t.Fatalf("String() = %q, want %q", got.String(), tt.in)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("ParseToken error = %v, want one wrapping ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseToken error = %q, want it to contain %q", err, tt.wantErr)
			}
			if _, s, ok := strings.Cut(tt.in, "."); ok && s != "" && strings.Contains(err.Error(), s) {
				t.Fatalf("ParseToken error %q echoes the secret", err)
			}
		})
	}
}

func TestParseTokenOrID(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "abcdef", want: "abcdef"},
		{in: "abcdef.0123456789abcdef", want: "abcdef"},
		{in: "abcde", wantErr: true},
		{in: "abcdef.short", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTokenOrID(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("ParseTokenOrID(%q) error = %v, want ErrInvalidToken", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseTokenOrID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestGenerateToken(t *testing.T) {
	format := regexp.MustCompile(`\A[a-z0-9]{6}\.[a-z0-9]{16}\z`)
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		tok, err := GenerateToken()
		if err != nil {
			t.Fatalf("GenerateToken: %v", err)
		}
		s := tok.String()
		if !format.MatchString(s) {
			t.Fatalf("generated token %q does not match %s", s, format)
		}
		if _, err := ParseToken(s); err != nil {
			t.Fatalf("generated token does not parse: %v", err)
		}
		if seen[s] {
			t.Fatalf("generated token %q twice", s)
		}
		seen[s] = true
	}
}

func TestSecretName(t *testing.T) {
	if got := SecretName("abcdef"); got != "bootstrap-token-abcdef" {
		t.Fatalf("SecretName = %q", got)
	}
}
