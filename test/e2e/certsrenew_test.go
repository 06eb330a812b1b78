//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// serialOf is the serial number of the first PEM certificate in data ("" if none).
func serialOf(data []byte) string {
	b, _ := pem.Decode(data)
	if b == nil {
		return ""
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}

// fileSerial is serialOf a file on n ("" if unreadable).
func fileSerial(n *framework.Node, p string) string {
	b, _ := os.ReadFile(n.HostPath(p))
	return serialOf(b)
}

// kubeconfigSerial is the serial of the client certificate embedded in the kubeconfig p on n.
func kubeconfigSerial(t *testing.T, n *framework.Node, p string) string {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(n.HostPath(p))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range kc.AuthInfos {
		if s := serialOf(u.ClientCertificateData); s != "" {
			return s
		}
	}
	return ""
}

// servedSerial is the serial of the serving certificate the API at addr presents, which
// must verify against the cluster CA caPEM.
func servedSerial(ctx context.Context, addr string, caPEM []byte) (string, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: strings.Split(addr, ":")[0]}}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// checkCertsRenew runs issue 18's `selfkube certs renew` on the control-plane node cp (the
// node init ran on, which holds every CA key) while the prober counts every identity:
// a dry run changes nothing; then every certificate of the control-plane Secrets, etcd's
// on the node, admin.conf and the asset directory's copies change serial, the API serves
// the renewed certificate with 0 failed requests throughout, the checkpoint follows the
// Secret, and logs of a pod on the worker still come through the API (the renewed
// apiserver-kubelet-client).
func checkCertsRenew(ctx context.Context, t *testing.T, cs kubernetes.Interface, cp, worker *framework.Node, cpIP, bin string) {
	t.Helper()
	secret := func(name string) map[string][]byte {
		s, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Data
	}
	api := secret("kube-apiserver")
	ca := api["ca.crt"]
	addr := cpIP + ":6443"
	files := []string{"/etc/kubernetes/pki/etcd/server.crt", "/etc/kubernetes/pki/etcd/peer.crt", "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
		"/var/lib/selfkube/assets/tls/apiserver.crt"}
	before := map[string]string{}
	for _, k := range []string{"apiserver.crt", "apiserver-kubelet-client.crt", "apiserver-etcd-client.crt", "front-proxy-client.crt"} {
		before["secret "+k] = serialOf(api[k])
	}
	for _, f := range files {
		before[f] = fileSerial(cp, f)
	}
	before["admin.conf"] = kubeconfigSerial(t, cp, "/etc/kubernetes/admin.conf")
	served, err := servedSerial(ctx, addr, ca)
	if err != nil || served != before["secret apiserver.crt"] {
		t.Fatalf("the API serves serial %s (%v), the Secret holds %s", served, err, before["secret apiserver.crt"])
	}

	out, err := cp.Exec(ctx, bin, "certs", "renew", "all", "--dry-run")
	if err != nil || !strings.Contains(out, "would be renewed") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("certs renew all --dry-run: %v\n%s", err, out)
	}
	if serialOf(secret("kube-apiserver")["apiserver.crt"]) != before["secret apiserver.crt"] || fileSerial(cp, files[0]) != before[files[0]] {
		t.Fatalf("the dry run renewed something")
	}
	if out, err := cp.Exec(ctx, bin, "certs", "renew", "etcd"); err == nil || !strings.Contains(out, `"etcd" is not a certificate selfkube renews`) {
		t.Errorf("certs renew of an unknown name: %v\n%s", err, out)
	}

	targets := availabilityTargets(ctx, t, cs, cp, "https://"+addr)
	start := time.Now()
	rep, informed := measureAvailability(ctx, t, cs, "certs-renew", targets, func() {
		out, err = cp.Exec(ctx, bin, "certs", "renew", "all")
		t.Logf("selfkube certs renew all (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
		if err != nil {
			t.Fatalf("certs renew all: %v", err)
		}
	})
	requireNoGap(t, rep, informed)
	for _, want := range []string{"✓ rolling kube-apiserver onto its renewed certificates", "✓ rolling kube-controller-manager onto its renewed certificates",
		"✓ rolling kube-scheduler onto its renewed certificates"} {
		if !strings.Contains(out, want) {
			t.Errorf("certs renew did not say %q", want)
		}
	}
	if strings.Contains(out, "skipped") {
		t.Errorf("on the node init ran on, every CA key is at hand, yet certs renew skipped some:\n%s", out)
	}

	api = secret("kube-apiserver")
	after := map[string]string{}
	for _, k := range []string{"apiserver.crt", "apiserver-kubelet-client.crt", "apiserver-etcd-client.crt", "front-proxy-client.crt"} {
		after["secret "+k] = serialOf(api[k])
	}
	for _, f := range files {
		after[f] = fileSerial(cp, f)
	}
	after["admin.conf"] = kubeconfigSerial(t, cp, "/etc/kubernetes/admin.conf")
	for k, old := range before {
		if after[k] == "" || after[k] == old {
			t.Errorf("%s: serial %s before, %s after: not renewed", k, old, after[k])
		}
	}
	if after["/var/lib/selfkube/assets/tls/apiserver.crt"] != after["secret apiserver.crt"] {
		t.Errorf("the asset directory's apiserver.crt is not the Secret's renewed one")
	}
	if got := fileSerial(cp, "/var/lib/selfkube/assets/tls/etcd/server.crt"); got != after[files[0]] {
		t.Errorf("the asset directory's etcd/server.crt (serial %s) is not the node's renewed one (%s)", got, after[files[0]])
	}
	served, err = servedSerial(ctx, addr, ca)
	if err != nil || served != after["secret apiserver.crt"] {
		t.Errorf("after the renewal the API serves serial %s (%v), want the renewed %s", served, err, after["secret apiserver.crt"])
	}
	wait(ctx, t, 2*time.Minute, "the apiserver's checkpoint holding the renewed certificate", func(ctx context.Context) error {
		if got := fileSerial(cp, "/etc/kubernetes/checkpoints/kube-apiserver/volumes/secrets/apiserver.crt"); got != after["secret apiserver.crt"] {
			return fmt.Errorf("the checkpoint holds serial %s", got)
		}
		return nil
	})
	// The renewed admin.conf works.
	if _, _, admin := adminOf(t, cp, cpIP); admin != nil {
		if _, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("the renewed admin.conf: %v", err)
		}
	}
	// Logs through the API: the apiserver's renewed kubelet client certificate.
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + worker.Name, LabelSelector: "app.kubernetes.io/name=kube-proxy"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no kube-proxy pod on %s: %v", worker.Name, err)
	}
	p := pods.Items[0]
	if _, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptrTo[int64](5)}).DoRaw(ctx); err != nil {
		t.Errorf("logs of %s on the worker after the renewal: %v", p.Name, err)
	}
}
