package bootstrap

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/selfkube/selfkube/internal/pki/pkitest"
)

func TestJoinCommand(t *testing.T) {
	ca, caPEM := pkitest.NewCA(t)
	// The pin computed independently: SHA-256 over the DER SubjectPublicKeyInfo.
	spki, err := x509.MarshalPKIXPublicKey(ca.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	if got := CAHash(ca); got != hash {
		t.Fatalf("CAHash = %s, want %s", got, hash)
	}

	got, err := JoinCommand("https://10.0.0.1:6443", testToken, caPEM)
	if err != nil {
		t.Fatalf("JoinCommand: %v", err)
	}
	want := "selfkube join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash " + hash
	if got != want {
		t.Fatalf("JoinCommand =\n%s\nwant\n%s", got, want)
	}

	// A bundle (CA rotation) pins every CA.
	other, otherPEM := pkitest.NewCA(t)
	got, err = JoinCommand("10.0.0.1:6443", testToken, append(append([]byte{}, caPEM...), otherPEM...))
	if err != nil {
		t.Fatalf("JoinCommand with a bundle: %v", err)
	}
	if want2 := want + " --discovery-token-ca-cert-hash " + CAHash(other); got != want2 {
		t.Fatalf("JoinCommand with a bundle =\n%s\nwant\n%s", got, want2)
	}
}

func TestJoinCommandErrors(t *testing.T) {
	_, caPEM := pkitest.NewCA(t)
	if _, err := JoinCommand("10.0.0.1:6443", Token{ID: "abcdef"}, caPEM); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("bad token: error = %v", err)
	}
	if _, err := JoinCommand("10.0.0.1:6443", testToken, nil); err == nil {
		t.Fatal("no CA: no error")
	}
	if _, err := JoinCommand("http://10.0.0.1:6443", testToken, caPEM); err == nil {
		t.Fatal("http endpoint: no error")
	}
}
