//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

// rotationConfig is selfkubeConfig with leaf certificates valid for 10 minutes, renewed
// 6 minutes before they expire.
func rotationConfig(name, ip string) string {
	return strings.Replace(selfkubeConfig(name, ip), "imageRepository: registry.local\n",
		"imageRepository: registry.local\ncertificates:\n  validity: 10m\n  renewBefore: 6m\n", 1)
}

// TestCertRotation is issue 18's automatic rotation on one control-plane node and a
// worker, with leaf certificates valid for 10 minutes and renewed 6 minutes before they
// expire: within 10 minutes of init every control-plane certificate has a new serial (the
// node agent renewed it, the first ones a little after 4 minutes), the prober's three
// identities lose no request throughout, the ControlPlane's status says what was
// renewed, logs of a pod on the worker come through the API, and after a reboot the node
// comes back serving the renewed certificate (its checkpoint followed the Secret).
func TestCertRotation(t *testing.T) {
	h := framework.NewForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bin := selfkubeBinary(t)
	const cpName, cpIP, wName, wIP = "ro1", "172.31.0.91", "row", "172.31.0.92"
	opts := framework.UpOptions{NoPodNetwork: true, Selfkube: bin}
	cp, err := h.UpWith(ctx, cpName, cpIP, opts)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := h.UpWith(ctx, wName, wIP, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := "/etc/kubernetes/selfkube.yaml"
	if err := os.WriteFile(cp.HostPath(cfgFile), []byte(rotationConfig(cpName, cpIP)), 0o600); err != nil {
		t.Fatal(err)
	}
	var initDone time.Time
	step(t, "InitAndJoin", func(t *testing.T) {
		out, err := cp.Exec(ctx, bin, "init", "--config", cfgFile)
		if err != nil {
			t.Fatalf("selfkube init: %v\n%s", err, out)
		}
		initDone = time.Now()
		if out, err := worker.Exec(ctx, append([]string{bin}, joinCommandArgs(t, out)...)...); err != nil {
			t.Fatalf("join of the worker: %v\n%s", err, out)
		}
	})
	// admin.conf lives 10 minutes: the test's own administrator is a user of its own,
	// bound to cluster-admin, with a certificate of a day.
	_, _, initial := adminOf(t, cp, cpIP)
	const adminUser = "e2e-rotation-admin"
	if _, err := initial.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: adminUser},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: adminUser}},
	}, metav1.CreateOptions{}); ensureCreated(err) != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := userCertificate(cp.HostPath("/var/lib/selfkube/assets/tls"), adminUser)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(cp.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(restConfigOf(caPEM, certPEM, keyPEM, cpIP))
	if err != nil {
		t.Fatal(err)
	}
	wait(ctx, t, 3*time.Minute, "both nodes Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cpName, wName) })

	// Every leaf certificate of the control plane, by where it lives.
	serials := func(t *testing.T) map[string]string {
		out := map[string]string{}
		for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			s, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range s.Data {
				if strings.HasSuffix(k, ".crt") && !strings.Contains(k, "ca.crt") && k != "sa.pub" {
					out["secret "+name+"/"+k] = serialOf(v)
				}
				if s := kubeconfigDataSerial(v); strings.HasSuffix(k, ".conf") && s != "" {
					out["secret "+name+"/"+k] = s
				}
			}
		}
		for _, f := range []string{"/etc/kubernetes/pki/etcd/server.crt", "/etc/kubernetes/pki/etcd/peer.crt", "/etc/kubernetes/pki/etcd/healthcheck-client.crt"} {
			out[f] = fileSerial(cp, f)
		}
		for _, f := range []string{"/etc/kubernetes/admin.conf", "/etc/kubernetes/super-admin.conf"} {
			out[f] = kubeconfigSerial(t, cp, f)
		}
		return out
	}
	before := serials(t)
	for k, v := range before {
		if v == "" {
			t.Errorf("%s: no certificate found", k)
		}
	}
	t.Logf("%d control-plane certificates to be rotated", len(before))

	cpc := newControlPlaneClient(ctx, t, restConfigOf(caPEM, certPEM, keyPEM, cpIP))
	step(t, "EveryCertificateRotatedWithoutAGap", func(t *testing.T) {
		targets := availabilityTargets(ctx, t, cs, cp, "https://"+cpIP+":6443")
		var after map[string]string
		rep, informed := measureAvailability(ctx, t, cs, "certificate-rotation", targets, func() {
			// Each certificate is due 4 minutes after it was made (init made them
			// shortly before initDone); the agent looks every minute.
			wait(ctx, t, time.Until(initDone.Add(10*time.Minute)), "every control-plane certificate renewed", func(ctx context.Context) error {
				after = serials(t)
				var stale []string
				for k, old := range before {
					if after[k] == "" || after[k] == old {
						stale = append(stale, k)
					}
				}
				if len(stale) > 0 {
					return fmt.Errorf("not renewed yet: %s", strings.Join(stale, ", "))
				}
				return nil
			})
			t.Logf("every certificate renewed %.0f s after init", time.Since(initDone).Seconds())
			// The roll-outs the renewal started are over before the window closes: the
			// agent reports a renewal once it rolled every component (one after the
			// other), the API serves the renewed certificate, every component rolled.
			wait(ctx, t, 5*time.Minute, "the agent reporting its renewal, the apiserver serving its renewed certificate, the control plane rolled out", func(ctx context.Context) error {
				cur, err := cpc.get(ctx)
				if err != nil {
					return err
				}
				if st := cur.Status.Certificates[cpName]; len(st.Renewed) == 0 {
					return fmt.Errorf("the ControlPlane's status.certificates.%s reports no renewal yet: %+v", cpName, st)
				}
				api, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, "kube-apiserver", metav1.GetOptions{})
				if err != nil {
					return err
				}
				served, err := servedSerial(ctx, cpIP+":6443", caPEM)
				if err != nil {
					return err
				}
				if want := serialOf(api.Data["apiserver.crt"]); served != want {
					return fmt.Errorf("the API serves serial %s, its Secret holds %s", served, want)
				}
				return controlPlaneRolledOut(ctx, cs)
			})
		})
		requireNoGap(t, rep, informed)
		cur, err := cpc.get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st := cur.Status.Certificates[cpName]
		if len(st.Renewed) == 0 || st.Time.IsZero() {
			t.Errorf("the ControlPlane's status.certificates.%s: %+v, want what was renewed when", cpName, st)
		} else {
			t.Logf("status.certificates.%s: renewed %s at %s; next due %v", cpName, strings.Join(st.Renewed, ", "), st.Time.UTC().Format(time.TimeOnly), st.NextDue)
		}
		// Logs through the API: the apiserver's renewed kubelet client certificate.
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + wName, LabelSelector: "app.kubernetes.io/name=kube-proxy"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("no kube-proxy pod on %s: %v", wName, err)
		}
		p := pods.Items[0]
		if _, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptrTo[int64](5)}).DoRaw(ctx); err != nil {
			t.Errorf("logs of %s on the worker after the rotation: %v", p.Name, err)
		}
		// The renewed admin.conf works.
		_, _, admin := adminOf(t, cp, cpIP)
		if _, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("the rotated admin.conf: %v", err)
		}
	})

	step(t, "RebootAfterRotation", func(t *testing.T) {
		api, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, "kube-apiserver", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := serialOf(api.Data["apiserver.crt"])
		wait(ctx, t, 2*time.Minute, "the apiserver's checkpoint holding the rotated certificate", func(ctx context.Context) error {
			if got := fileSerial(cp, "/etc/kubernetes/checkpoints/kube-apiserver/volumes/secrets/apiserver.crt"); got != want {
				return fmt.Errorf("the checkpoint holds serial %s, the Secret %s", got, want)
			}
			return nil
		})
		if err := cp.Reboot(ctx); err != nil {
			t.Fatal(err)
		}
		wait(ctx, t, 5*time.Minute, "the API back after the reboot, serving the rotated certificate", func(ctx context.Context) error {
			served, err := servedSerial(ctx, cpIP+":6443", caPEM)
			if err != nil {
				return err
			}
			// The rotated one, or (if the next rotation came meanwhile) the Secret's now.
			api, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, "kube-apiserver", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if now := serialOf(api.Data["apiserver.crt"]); served != want && served != now {
				return fmt.Errorf("the API serves serial %s, neither the rotated %s nor the Secret's %s", served, want, now)
			}
			if served == before["secret kube-apiserver/apiserver.crt"] {
				return fmt.Errorf("the API serves the certificate from before the rotation (%s)", served)
			}
			t.Logf("after the reboot the API serves serial %s (rotated: %s)", served, want)
			return nil
		})
		wait(ctx, t, 3*time.Minute, "both nodes Ready after the reboot", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cpName, wName) })
	})
}

// kubeconfigDataSerial is the serial of the client certificate embedded in a kubeconfig's
// data ("" for a token, or no kubeconfig).
func kubeconfigDataSerial(data []byte) string {
	kc, err := clientcmd.Load(data)
	if err != nil {
		return ""
	}
	for _, u := range kc.AuthInfos {
		if s := serialOf(u.ClientCertificateData); s != "" {
			return s
		}
	}
	return ""
}

// restConfigOf is the test administrator's client configuration.
func restConfigOf(caPEM, certPEM, keyPEM []byte, ip string) *rest.Config {
	return &rest.Config{Host: "https://" + ip + ":6443", QPS: 50, Burst: 100,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertData: certPEM, KeyData: keyPEM}}
}

// controlPlaneRolledOut checks once that the apiserver DaemonSet and the controller
// manager's and scheduler's Deployments have rolled out, every pod Ready.
func controlPlaneRolledOut(ctx context.Context, cs kubernetes.Interface) error {
	if err := apiServerRolledOut(ctx, cs, 1, func(corev1.Container) bool { return true }); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		d, err := cs.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, want := d.Status, int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.Replicas != want || s.ReadyReplicas != want {
			return fmt.Errorf("%s: roll-out in progress: %+v", name, s)
		}
	}
	return nil
}
