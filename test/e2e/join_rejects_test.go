//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/test/e2e/framework"
)

// signedFor reports whether kube-public/cluster-info carries a signature for token ID id.
func signedFor(ctx context.Context, cs kubernetes.Interface, id string) (bool, error) {
	ci, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	_, ok := ci.Data[bootstrapapi.JWSSignatureKeyPrefix+id]
	return ok, nil
}

// expiredToken stores a bootstrap token whose expiration has passed (the Secret selfkube's
// token create would have written a minute before a one-minute TTL ran out) and waits
// until the token cleaner removed it. The bootstrapsigner never signs cluster-info for it.
func expiredToken(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	tok, err := bootstrap.ParseToken("exp1re.0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	s, err := bootstrap.BuildSecret(bootstrap.TokenSpec{Token: tok, TTL: time.Minute}, time.Now().Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the expired token: %v", err)
	}
	wait(ctx, t, time.Minute, "the token cleaner removing the expired token", func(ctx context.Context) error {
		_, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, s.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("the expired token is still there")
	})
	if signed, err := signedFor(ctx, cs, tok.ID); err != nil || signed {
		t.Fatalf("cluster-info signed for an expired token: %v %v", signed, err)
	}
	return tok.String()
}

// deletedToken creates a token with selfkube, waits until cluster-info is signed for it,
// deletes it with selfkube and waits until the signature is gone.
func deletedToken(ctx context.Context, t *testing.T, n *framework.Node, bin string, cs kubernetes.Interface) string {
	t.Helper()
	tok, err := bootstrap.ParseToken("de1ete.0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := n.Exec(ctx, bin, "token", "create", tok.String(), "--ttl", "1h"); err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	wait(ctx, t, time.Minute, "cluster-info signed for the new token", func(ctx context.Context) error {
		if signed, err := signedFor(ctx, cs, tok.ID); err != nil || !signed {
			return fmt.Errorf("not signed yet (%v)", err)
		}
		return nil
	})
	if out, err := n.Exec(ctx, bin, "token", "delete", tok.ID); err != nil {
		t.Fatalf("token delete: %v\n%s", err, out)
	}
	wait(ctx, t, time.Minute, "the deleted token's signature gone", func(ctx context.Context) error {
		if signed, err := signedFor(ctx, cs, tok.ID); err != nil || signed {
			return fmt.Errorf("still signed (%v)", err)
		}
		return nil
	})
	return tok.String()
}

// tamperingEndpoint serves, on the host's bridge address, the cluster's real cluster-info
// with its kubeconfig changed to point at itself and the signatures kept: what a machine in
// the middle would send. It returns the endpoint to join.
func tamperingEndpoint(ctx context.Context, t *testing.T, cs kubernetes.Interface, apiIP string) string {
	t.Helper()
	ci, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := ci.Data[bootstrapapi.KubeConfigKey]
	if !strings.Contains(kc, apiIP+":6443") {
		t.Fatalf("cluster-info does not name %s:6443:\n%s", apiIP, kc)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(framework.BridgeIP, "0"))
	if err != nil {
		t.Fatalf("listening on the bridge: %v", err)
	}
	endpoint := ln.Addr().String()
	tampered := ci.DeepCopy()
	tampered.Kind, tampered.APIVersion = "ConfigMap", "v1"
	tampered.Data[bootstrapapi.KubeConfigKey] = strings.ReplaceAll(kc, apiIP+":6443", endpoint)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tampered)
	}))
	srv.Listener = ln
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return endpoint
}
