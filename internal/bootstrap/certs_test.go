package bootstrap

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/selfkube/selfkube/internal/manifests"
)

func TestCertsHandOff(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := Create(ctx, client, TokenSpec{Token: tok}, time.Now()); err != nil {
		t.Fatal(err)
	}
	key, err := GenerateCertificateKey()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.key": []byte("-----BEGIN EC PRIVATE KEY-----\nsecret\n"), "ca.crt": []byte("cert")}
	if err := UploadCerts(ctx, client, tok, key, files); err != nil {
		t.Fatal(err)
	}
	s, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, CertsSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != SecretName(tok.ID) {
		t.Errorf("owner references %+v: want the token's Secret, so the certificates go with it", s.OwnerReferences)
	}
	for n, v := range s.Data {
		if strings.Contains(string(v), string(files[n])) {
			t.Errorf("%s is stored in the clear", n)
		}
	}
	got, err := DownloadCerts(ctx, client, key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	t.Run("wrong key", func(t *testing.T) {
		other, _ := GenerateCertificateKey()
		if _, err := DownloadCerts(ctx, client, other); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
			t.Errorf("err = %v, want a decryption error", err)
		}
	})
	t.Run("malformed key", func(t *testing.T) {
		if _, err := DownloadCerts(ctx, client, "abc"); err == nil || !strings.Contains(err.Error(), "hex digits") {
			t.Errorf("err = %v, want a key format error", err)
		}
	})
	t.Run("swapped files", func(t *testing.T) {
		s := s.DeepCopy()
		s.Data["ca.crt"], s.Data["ca.key"] = s.Data["ca.key"], s.Data["ca.crt"]
		if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := DownloadCerts(ctx, client, key); err == nil {
			t.Error("a file stored under another name decrypted")
		}
	})
	t.Run("gone", func(t *testing.T) {
		if err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, CertsSecretName, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := DownloadCerts(ctx, client, key); err == nil || !strings.Contains(err.Error(), "token create --control-plane") {
			t.Errorf("err = %v, want advice to make a new join command", err)
		}
	})
}

func TestGatherHandOff(t *testing.T) {
	ctx := context.Background()
	etcdDir := t.TempDir()
	for name, data := range map[string]string{"ca.crt": "etcd cert", "ca.key": "etcd key"} {
		if err := os.WriteFile(filepath.Join(etcdDir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secret := func(data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: manifests.ControllerManagerSecret}, Data: data}
	}
	full := map[string][]byte{
		manifests.SecretKey(manifests.FileCACert): []byte("cluster cert"),
		manifests.SecretKey(manifests.FileCAKey):  []byte("cluster key"),
	}

	got, err := GatherHandOff(ctx, fake.NewClientset(secret(full)), etcdDir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{HandOffCACert: "cluster cert", HandOffCAKey: "cluster key", HandOffEtcdCACert: "etcd cert", HandOffEtcdCAKey: "etcd key"}
	if len(got) != len(want) {
		t.Errorf("hand-off holds %d files, want %d", len(got), len(want))
	}
	for name, data := range want {
		if string(got[name]) != data {
			t.Errorf("%s = %q, want %q", name, got[name], data)
		}
	}

	noKey := map[string][]byte{manifests.SecretKey(manifests.FileCACert): []byte("cluster cert")}
	if _, err := GatherHandOff(ctx, fake.NewClientset(secret(noKey)), etcdDir); err == nil || !strings.Contains(err.Error(), manifests.SecretKey(manifests.FileCAKey)) {
		t.Errorf("a Secret without the CA key: %v", err)
	}
	if _, err := GatherHandOff(ctx, fake.NewClientset(), etcdDir); err == nil || !strings.Contains(err.Error(), manifests.ControllerManagerSecret) {
		t.Errorf("no Secret: %v", err)
	}
	if _, err := GatherHandOff(ctx, fake.NewClientset(secret(full)), t.TempDir()); err == nil || !strings.Contains(err.Error(), "control-plane node") {
		t.Errorf("not a control-plane node: %v", err)
	}
}
