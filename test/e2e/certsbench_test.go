//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/test/e2e/framework"
	"github.com/selfkube/selfkube/test/e2e/probe"
)

// The certificate renewal of the benchmark: every control-plane certificate of one
// control-plane node renewed, each tool its documented way, under the honest prober.
const (
	stepCertsRenew = "renew every control-plane certificate, one control-plane node (kubeadm certs renew all, then its static pods restarted " +
		"as its docs say / selfkube certs renew all): command → the API serving its renewed certificate, every control-plane pod Ready"
	availCertsRenew = "renewing every control-plane certificate, one control-plane node"
)

// servingRenewed waits until the API at addr serves a certificate other than old, and
// every kube-system pod is Ready (at least minSystem).
func servingRenewed(ctx context.Context, t *testing.T, cs kubernetes.Interface, addr string, caPEM []byte, old string, minSystem int) {
	t.Helper()
	wait(ctx, t, 5*time.Minute, "the API serving a renewed certificate, kube-system Ready", func(ctx context.Context) error {
		served, err := servedSerial(ctx, addr, caPEM)
		if err != nil {
			return err
		}
		if served == old {
			return fmt.Errorf("the API still serves serial %s", old)
		}
		return framework.KubeSystemReady(ctx, cs, minSystem)
	})
}

// benchKubeadmCerts measures kubeadm's renewal: `kubeadm certs renew all`, then the
// restart of the static pods its documentation gives (each manifest moved out of the
// kubelet's directory, 20 s, moved back).
func benchKubeadmCerts(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "kubeadm"
	cp, err := h.Up(ctx, "kc1", "172.31.0.93")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := h.KubeadmInit(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	const minSystem = 5 // apiserver, controller-manager, scheduler, etcd, kube-proxy
	addr := cp.IP + ":6443"
	caPEM, err := os.ReadFile(cp.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	wait(ctx, t, 3*time.Minute, "the node Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, cp.Name) })
	targets := availabilityTargets(ctx, t, cs, cp, "https://"+addr)
	manifests := cp.HostPath("/etc/kubernetes/manifests")
	away := cp.HostPath("/etc/kubernetes/manifests-away")
	for i := 0; i < b.reboots; i++ {
		b.certRenewal(ctx, t, variant, cs, targets, addr, caPEM, minSystem, func() {
			if out, err := cp.Exec(ctx, h.Config().Kubeadm(), "certs", "renew", "all"); err != nil {
				t.Fatalf("kubeadm certs renew all: %v\n%s", err, out)
			}
			if err := os.MkdirAll(away, 0o700); err != nil {
				t.Fatal(err)
			}
			files := []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"}
			for _, f := range files {
				if err := os.Rename(filepath.Join(manifests, f), filepath.Join(away, f)); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(20 * time.Second) // the kubelet's file check frequency, as kubeadm's docs say
			for _, f := range files {
				if err := os.Rename(filepath.Join(away, f), filepath.Join(manifests, f)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// benchSelfkubeCerts measures `selfkube certs renew all` on the control-plane node init
// ran on (it returns once every component rolled onto its renewed certificates).
func benchSelfkubeCerts(ctx context.Context, t *testing.T, h *framework.Harness, b *bench) {
	const variant = "selfkube"
	bin := selfkubeBinary(t)
	const name, ip = "sc1", "172.31.0.94"
	cp, err := h.UpWith(ctx, name, ip, framework.UpOptions{NoPodNetwork: true, Selfkube: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp.HostPath("/etc/kubernetes/selfkube.yaml"), []byte(selfkubeConfig(name, ip)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cp.Exec(ctx, bin, "init", "--config", "/etc/kubernetes/selfkube.yaml"); err != nil {
		t.Fatalf("selfkube init: %v\n%s", err, out)
	}
	_, _, cs := adminOf(t, cp, ip)
	const minSystem = 5
	addr := ip + ":6443"
	caPEM, err := os.ReadFile(cp.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	wait(ctx, t, 3*time.Minute, "the node Ready", func(ctx context.Context) error { return framework.NodesReady(ctx, cs, name) })
	targets := availabilityTargets(ctx, t, cs, cp, "https://"+addr)
	for i := 0; i < b.reboots; i++ {
		b.certRenewal(ctx, t, variant, cs, targets, addr, caPEM, minSystem, func() {
			if out, err := cp.Exec(ctx, bin, "certs", "renew", "all"); err != nil {
				t.Fatalf("selfkube certs renew all: %v\n%s", err, out)
			}
		})
		// The admin client's certificate was renewed too: the old one stays valid, but
		// the next round reads the new one like an administrator would.
		_, _, cs = adminOf(t, cp, ip)
		if _, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// certRenewal measures one renewal under the honest prober, on a settled cluster: the
// clock runs from renew's start until the API at addr serves a renewed certificate and
// kube-system is Ready.
func (b *bench) certRenewal(ctx context.Context, t *testing.T, variant string, cs kubernetes.Interface, targets []probe.Target,
	addr string, caPEM []byte, minSystem int, renew func()) {
	t.Helper()
	wait(ctx, t, 5*time.Minute, "a settled cluster", func(ctx context.Context) error { return framework.KubeSystemReady(ctx, cs, minSystem) })
	old, err := servedSerial(ctx, addr, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	var took time.Duration
	rep := probeDuring(ctx, t, probe.Options{}, targets, func() {
		start := time.Now()
		renew()
		servingRenewed(ctx, t, cs, addr, caPEM, old, minSystem)
		took = time.Since(start)
	})
	t.Logf("%s, %s (%s):\n%s", variant, availCertsRenew, took.Round(time.Millisecond), rep.Table())
	b.table.Add(variant, stepCertsRenew, took)
	b.avail.Add(variant, availCertsRenew, rep)
}
