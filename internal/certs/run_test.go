package certs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/pki"
	"github.com/selfkube/selfkube/internal/status"
)

func writeFile(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

// A node as init leaves it, with the API's Secrets: renewing all renews the Secrets'
// certificates and rolls their components, renews etcd's certificate and admin.conf on
// the node, gives the asset directory's copy the Secret's renewed certificate, keeps
// the files' modes, and a dry run changes nothing.
func TestRenew(t *testing.T) {
	f := newFixture(t)
	etcdCA := issueFor(t, pki.Spec{Name: pki.EtcdCA, Kind: pki.KindCA, CommonName: "etcd-ca"}, nil)
	etcdServer := issueFor(t, pki.Spec{Name: pki.EtcdServer, Kind: pki.KindPeer, CommonName: "cp1", DNSNames: []string{"cp1"}}, etcdCA)
	admin := issueFor(t, pki.Spec{Name: "admin", Kind: pki.KindClient, CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}}, f.ca)
	l := host.Layout{Root: t.TempDir()}
	writeFile(t, filepath.Join(l.PKIDir(), "etcd/ca.crt"), pki.EncodeCertificate(etcdCA.Cert), 0o644)
	writeFile(t, filepath.Join(l.PKIDir(), "etcd/ca.key"), encodeKey(t, etcdCA), 0o600)
	writeFile(t, filepath.Join(l.PKIDir(), "etcd/server.crt"), pki.EncodeCertificate(etcdServer.Cert), 0o644)
	writeFile(t, filepath.Join(l.PKIDir(), "etcd/server.key"), encodeKey(t, etcdServer), 0o600)
	writeFile(t, filepath.Join(l.KubernetesDir(), "admin.conf"), kubeconfigFor(t, f.ca, admin, ""), 0o600)
	// The kubelet's kubeconfig is the kubelet's to rotate; the asset directory's etcd
	// certificate is a copy of the node's.
	kubeletConf := filepath.Join(l.KubernetesDir(), "kubelet.conf")
	writeFile(t, kubeletConf, kubeconfigFor(t, f.ca, admin, ""), 0o600)
	assetEtcd := filepath.Join(l.AssetDir(), "tls/etcd/server.crt")
	writeFile(t, assetEtcd, pki.EncodeCertificate(etcdServer.Cert), 0o644)
	writeFile(t, filepath.Join(l.AssetDir(), "tls/etcd/server.key"), encodeKey(t, etcdServer), 0o600)
	assetAPI := filepath.Join(l.AssetDir(), "tls/apiserver.crt")
	writeFile(t, assetAPI, f.files["apiserver.crt"], 0o644)
	writeFile(t, filepath.Join(l.AssetDir(), "tls/apiserver.key"), f.files["apiserver.key"], 0o600)

	cfg := configtest.Config(t, nil)
	clusterYAML, err := yaml.Marshal(&cfg.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	apiData := map[string][]byte{"ca.crt": f.files["ca.crt"], "apiserver.crt": f.files["apiserver.crt"], "apiserver.key": f.files["apiserver.key"]}
	kcmData := map[string][]byte{"ca.crt": f.files["ca.crt"], "ca.key": encodeKey(t, f.ca), "controller-manager.conf": f.files["controller-manager.conf"]}
	schedData := map[string][]byte{"scheduler.conf": kubeconfigFor(t, f.ca, nil, "a-token")}
	rolled := appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberAvailable: 1}
	cs := fake.NewSimpleClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: manifests.ClusterConfigName, Namespace: manifests.Namespace},
			Data: map[string]string{manifests.ClusterConfigKey: string(clusterYAML)}},
		manifests.ControlPlaneSecret(manifests.APIServer, apiData),
		manifests.ControlPlaneSecret(manifests.ControllerManager, kcmData),
		manifests.ControlPlaneSecret(manifests.Scheduler, schedData),
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: manifests.APIServer, Namespace: manifests.Namespace}, Status: rolled},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: manifests.ControllerManager, Namespace: manifests.Namespace},
			Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}},
	)
	ctx := context.Background()
	o := RenewOptions{Layout: l, Client: cs, Names: []string{"all"}, RollTimeout: 5 * time.Second, Status: status.New(os.Stderr), DryRun: true}

	snapshot := func() map[string][]byte {
		out := map[string][]byte{}
		filepath.WalkDir(l.Root, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				out[p], _ = os.ReadFile(p)
			}
			return nil
		})
		for _, n := range []string{manifests.APIServer, manifests.ControllerManager, manifests.Scheduler} {
			s, _ := cs.CoreV1().Secrets(manifests.Namespace).Get(ctx, n, metav1.GetOptions{})
			for k, v := range s.Data {
				out["secret/"+n+"/"+k] = v
			}
		}
		return out
	}
	before := snapshot()
	if _, err := Renew(ctx, o); err != nil {
		t.Fatal(err)
	}
	for k, v := range snapshot() {
		if !bytes.Equal(before[k], v) {
			t.Errorf("the dry run changed %s", k)
		}
	}

	o.DryRun = false
	done, err := Renew(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	for _, k := range []string{"secret/kube-apiserver/apiserver.crt", "secret/kube-apiserver/apiserver.key",
		"secret/kube-controller-manager/controller-manager.conf",
		filepath.Join(l.PKIDir(), "etcd/server.crt"), filepath.Join(l.PKIDir(), "etcd/server.key"),
		filepath.Join(l.KubernetesDir(), "admin.conf")} {
		if bytes.Equal(before[k], after[k]) {
			t.Errorf("%s was not renewed", k)
		}
	}
	if !bytes.Equal(after[assetEtcd], after[filepath.Join(l.PKIDir(), "etcd/server.crt")]) {
		t.Errorf("the asset directory's etcd/server.crt is not the node's renewed one")
	}
	for _, k := range []string{kubeletConf, "secret/kube-controller-manager/ca.key", "secret/kube-scheduler/scheduler.conf", filepath.Join(l.PKIDir(), "etcd/ca.crt")} {
		if !bytes.Equal(before[k], after[k]) {
			t.Errorf("%s was changed", k)
		}
	}
	if !bytes.Equal(after[assetAPI], after["secret/kube-apiserver/apiserver.crt"]) ||
		!bytes.Equal(after[filepath.Join(l.AssetDir(), "tls/apiserver.key")], after["secret/kube-apiserver/apiserver.key"]) {
		t.Errorf("the asset directory's copy of apiserver is not the Secret's renewed one")
	}
	for p, want := range map[string]os.FileMode{filepath.Join(l.PKIDir(), "etcd/server.key"): 0o600, filepath.Join(l.PKIDir(), "etcd/server.crt"): 0o644,
		filepath.Join(l.AssetDir(), "tls/apiserver.key"): 0o600} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, info.Mode().Perm(), want, err)
		}
	}
	ds, _ := cs.AppsV1().DaemonSets(manifests.Namespace).Get(ctx, manifests.APIServer, metav1.GetOptions{})
	d, _ := cs.AppsV1().Deployments(manifests.Namespace).Get(ctx, manifests.ControllerManager, metav1.GetOptions{})
	if ds.Spec.Template.Annotations[AnnotationCertificatesRenewed] == "" || d.Spec.Template.Annotations[AnnotationCertificatesRenewed] == "" {
		t.Errorf("the apiserver and controller manager were not rolled")
	}
	got := byName(done)
	if got["tls/apiserver"].CopyOf != "secret kube-system/kube-apiserver" || got["etcd/server"].NewSerial == "" || got["admin.conf"].NewSerial == "" {
		t.Errorf("renewals reported: %+v", done)
	}
}
