package bootstrap

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/manifests"
)

// CertsSecretName is the Secret in kube-system that hands a joining control-plane node
// the cluster's CA keys, encrypted with a certificate key only its join command carries.
// It belongs to the control-plane join token it was made with (ControlPlaneGroup, 2 h by
// default), so it is deleted with the token, and by the join that used it.
const CertsSecretName = manifests.ControlPlaneCertsSecret

// ControlPlaneGroup is the extra group of a control-plane join token: the only group that
// may read CertsSecretName.
const ControlPlaneGroup = manifests.ControlPlaneJoinGroup

// ControlPlaneTTL is how long a control-plane join token, and so the hand-off it owns,
// lives unless told otherwise: the CA keys stay in the cluster, encrypted, no longer.
const ControlPlaneTTL = 2 * time.Hour

// The files of the control-plane hand-off, by name.
const (
	HandOffCACert     = "ca.crt"
	HandOffCAKey      = "ca.key"
	HandOffEtcdCACert = "etcd-ca.crt"
	HandOffEtcdCAKey  = "etcd-ca.key"
)

// GatherHandOff collects what a joining control-plane node needs: the cluster CA from the
// controller manager's Secret, the etcd CA from this node's etcd PKI directory.
func GatherHandOff(ctx context.Context, c kubernetes.Interface, etcdPKIDir string) (map[string][]byte, error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, manifests.ControllerManagerSecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA from kube-system/%s: %w", manifests.ControllerManagerSecret, err)
	}
	files := map[string][]byte{
		HandOffCACert: s.Data[manifests.SecretKey(manifests.FileCACert)],
		HandOffCAKey:  s.Data[manifests.SecretKey(manifests.FileCAKey)],
	}
	for name, file := range map[string]string{HandOffEtcdCACert: "ca.crt", HandOffEtcdCAKey: "ca.key"} {
		p := filepath.Join(etcdPKIDir, file)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading the etcd CA: %w: run this on a control-plane node (or pass --etcd-pki-dir)", err)
		}
		files[name] = data
	}
	for name, key := range map[string]string{HandOffCACert: manifests.FileCACert, HandOffCAKey: manifests.FileCAKey} {
		if len(files[name]) == 0 {
			return nil, fmt.Errorf("the Secret kube-system/%s has no %s: the control plane's Secrets are damaged",
				manifests.ControllerManagerSecret, manifests.SecretKey(key))
		}
	}
	for _, name := range []string{HandOffEtcdCACert, HandOffEtcdCAKey} {
		if len(files[name]) == 0 {
			return nil, fmt.Errorf("%s is empty: this node's etcd CA is damaged", filepath.Join(etcdPKIDir, strings.TrimPrefix(name, "etcd-")))
		}
	}
	return files, nil
}

// CertificateKeyLength is the length of a certificate key in bytes (AES-256).
const CertificateKeyLength = 32

// GenerateCertificateKey returns a new random certificate key, hex-encoded.
func GenerateCertificateKey() (string, error) {
	b := make([]byte, CertificateKeyLength)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a certificate key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func certsAEAD(keyHex string) (cipher.AEAD, error) {
	key, err := hex.DecodeString(keyHex)
	if err != nil || len(key) != CertificateKeyLength {
		return nil, fmt.Errorf("the certificate key must be %d hex digits, as `selfkube token create --control-plane` printed it", 2*CertificateKeyLength)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// UploadCerts encrypts files (name → content) with keyHex into CertsSecretName, owned by
// token's Secret. An earlier upload is replaced.
func UploadCerts(ctx context.Context, client kubernetes.Interface, token Token, keyHex string, files map[string][]byte) error {
	aead, err := certsAEAD(keyHex)
	if err != nil {
		return err
	}
	owner, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, SecretName(token.ID), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the token the certificates are bound to: %w", err)
	}
	data := map[string][]byte{}
	for name, content := range files {
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		// The name is authenticated too: a file cannot be passed off as another.
		data[name] = aead.Seal(nonce, nonce, content, []byte(name))
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: CertsSecretName, Namespace: metav1.NamespaceSystem,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: owner.Name, UID: owner.UID}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	_, err = client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{FieldManager: apply.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		_, err = client.CoreV1().Secrets(metav1.NamespaceSystem).Update(ctx, s, metav1.UpdateOptions{FieldManager: apply.FieldManager})
	}
	if err != nil {
		return fmt.Errorf("storing kube-system/%s: %w", CertsSecretName, err)
	}
	return nil
}

// DeleteCerts removes CertsSecretName (gone already is fine): a control-plane join that
// succeeded calls it, so the encrypted CA keys live no longer than needed.
func DeleteCerts(ctx context.Context, client kubernetes.Interface) error {
	err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, CertsSecretName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the control-plane hand-off kube-system/%s: %w", CertsSecretName, err)
	}
	return nil
}

// DownloadCerts reads CertsSecretName (with a token's client) and decrypts it with keyHex.
func DownloadCerts(ctx context.Context, client kubernetes.Interface, keyHex string) (map[string][]byte, error) {
	aead, err := certsAEAD(keyHex)
	if err != nil {
		return nil, err
	}
	s, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, CertsSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("kube-system/%s does not exist (its token expired or was deleted): "+
			"make a new join command with `selfkube token create --control-plane --print-join-command` on a control-plane node", CertsSecretName)
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s with the token: %w", CertsSecretName, err)
	}
	names := make([]string, 0, len(s.Data))
	for n := range s.Data {
		names = append(names, n)
	}
	sort.Strings(names)
	out := map[string][]byte{}
	for _, n := range names {
		sealed := s.Data[n]
		if len(sealed) < aead.NonceSize() {
			return nil, fmt.Errorf("kube-system/%s: %s is damaged", CertsSecretName, n)
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(n))
		if err != nil {
			return nil, fmt.Errorf("kube-system/%s: %s does not decrypt with this certificate key: "+
				"check --certificate-key against the join command, or make a new one", CertsSecretName, n)
		}
		out[n] = plain
	}
	return out, nil
}
