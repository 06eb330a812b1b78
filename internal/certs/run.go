package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/pki"
	"github.com/selfkube/selfkube/internal/status"
)

// RenewOptions are the knobs of `selfkube certs renew`.
type RenewOptions struct {
	Layout host.Layout
	// Client is an administrator's client of the cluster.
	Client kubernetes.Interface
	// Names are the certificates to renew (see Renewal.Name); empty or "all": every one.
	Names     []string
	ExtraSANs []string
	DryRun    bool
	// Within, when set, renews only the certificates with less than this left (what a
	// node agent rotates: those within the renewal window, and those that enter it
	// before its next look).
	Within time.Duration
	// RollTimeout bounds the wait for each component's roll-out.
	RollTimeout time.Duration
	Status      *status.Printer
	Now         func() time.Time
}

// controlPlaneSecrets are the Secrets of the self-hosted components, by the workload that
// mounts each.
var controlPlaneSecrets = []string{manifests.APIServer, manifests.ControllerManager, manifests.Scheduler}

// Renew renews the cluster's leaf certificates that this node can renew: those in the
// control-plane Secrets (then rolls the components that mount them), and those in the
// files of this node (etcd's, the kubeconfigs init and join wrote, the asset directory's
// copies). The checkpoints follow by themselves: the checkpointer copies the new Secrets
// when the rolled pods are Ready. Certificates whose CA key is not on this node are
// listed as skipped.
func Renew(ctx context.Context, o RenewOptions) ([]Renewal, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	selected, err := selector(o.Names)
	if err != nil {
		return nil, err
	}
	cluster, err := manifests.ReadClusterConfig(ctx, o.Client)
	if err != nil {
		return nil, err
	}
	c := cluster.Certificates
	if c.Validity == nil {
		return nil, fmt.Errorf("the cluster configuration names no certificate validity")
	}
	secrets := map[string]*corev1.Secret{}
	for _, name := range controlPlaneSecrets {
		s, err := o.Client.CoreV1().Secrets(manifests.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the Secret %s/%s: %w", manifests.Namespace, name, err)
		}
		secrets[name] = s
	}
	cas := loadCAs(o.Layout, secrets)
	r := Renewer{CAs: cas, Issuer: pki.Issuer{KeyAlgorithm: c.KeyAlgorithm, Validity: c.Validity.Duration, Now: o.Now()},
		Select: selected, ExtraSANs: o.ExtraSANs, DryRun: o.DryRun}
	if o.Within > 0 {
		r.Due = Within(o.Within, o.Now())
	}

	var all []Renewal
	// Old content → new content of every renewed Secret entry: a file on this node that
	// is a copy of it gets the same renewed certificate, not one of its own.
	copies := map[string]copy{}
	var changed []string
	for _, name := range controlPlaneSecrets {
		s := secrets[name]
		data, done, err := r.Files("secret "+manifests.Namespace+"/"+name, s.Data)
		if err != nil {
			return nil, err
		}
		all = append(all, done...)
		if !renewedAny(done) {
			continue
		}
		for k, v := range data {
			if !bytes.Equal(v, s.Data[k]) {
				copies[string(s.Data[k])] = copy{data: v, from: "secret " + manifests.Namespace + "/" + name}
			}
		}
		s = s.DeepCopy()
		s.Data = data
		if _, err := o.Client.CoreV1().Secrets(manifests.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("updating the Secret %s/%s (nothing of it changed): %w", manifests.Namespace, name, err)
		}
		changed = append(changed, name)
	}

	for _, dir := range []struct {
		path      string
		recursive bool
	}{{o.Layout.PKIDir(), true}, {o.Layout.KubernetesDir(), false}, {o.Layout.AssetDir(), true}} {
		done, err := renewDir(r, dir.path, dir.recursive, copies)
		if err != nil {
			return nil, err
		}
		all = append(all, done...)
	}

	for _, name := range changed {
		if err := roll(ctx, o, name); err != nil {
			return all, err
		}
	}
	return all, nil
}

// RenewalWindow is the cluster's certificates.renewBefore.
func RenewalWindow(ctx context.Context, client kubernetes.Interface) (time.Duration, error) {
	cluster, err := manifests.ReadClusterConfig(ctx, client)
	if err != nil {
		return 0, err
	}
	return cluster.Certificates.RenewalWindow(), nil
}

// RenewableNames are the names `certs renew` takes besides "all".
var RenewableNames = []string{
	pki.APIServer, pki.APIServerKubeletClient, pki.APIServerEtcdClient, pki.FrontProxyClient,
	pki.EtcdServer, pki.EtcdPeer, pki.EtcdHealthcheckClient,
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
}

// selector turns the names given into a Select function (nil: all), refusing unknown
// names. A certificate in a Secret is named by its key ("apiserver-etcd-client"), in a
// directory by its path ("etcd/server"): both spellings of etcd's are accepted.
func selector(names []string) (func(string) bool, error) {
	if len(names) == 0 || len(names) == 1 && names[0] == "all" {
		return nil, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		if !slices.Contains(RenewableNames, n) {
			return nil, fmt.Errorf("%q is not a certificate selfkube renews: name %s, or all", n, strings.Join(RenewableNames, ", "))
		}
		want[n] = true
		want[manifests.SecretKey(n)] = true // "etcd/server" is "etcd-server" as a key
	}
	// In the asset directory the same certificates are below tls/ and auth/.
	return func(name string) bool {
		return want[name] || want[strings.TrimPrefix(strings.TrimPrefix(name, "tls/"), "auth/")]
	}, nil
}

func renewedAny(rs []Renewal) bool {
	for _, r := range rs {
		if r.NewSerial != "" {
			return true
		}
	}
	return false
}

// loadCAs gathers the CAs: their certificates from the Secrets, their keys from where this
// node has them: the controller manager's Secret (the cluster CA), this node's PKI
// (etcd's CA) and the asset directory of the node init ran on (all three).
func loadCAs(l host.Layout, secrets map[string]*corev1.Secret) CAs {
	cas := CAs{}
	add := func(name string, certPEM, keyPEM []byte) {
		if cas[name] != nil && cas[name].Key != nil {
			return
		}
		cert, err := parseCert(certPEM)
		if err != nil || !cert.IsCA {
			return
		}
		kp := &pki.KeyPair{Cert: cert}
		if key, err := pki.ParseKey(keyPEM); err == nil {
			kp.Key = key
		}
		cas[name] = kp
	}
	read := func(p string) []byte { b, _ := os.ReadFile(p); return b }
	kcm := secrets[manifests.ControllerManager].Data
	add(pki.CA, kcm[manifests.SecretKey(manifests.FileCACert)], kcm[manifests.SecretKey(manifests.FileCAKey)])
	for _, name := range []string{pki.CA, pki.FrontProxyCA, pki.EtcdCA} {
		for _, dir := range []string{l.PKIDir(), filepath.Join(l.AssetDir(), pki.Dir)} {
			base := filepath.Join(dir, filepath.FromSlash(name))
			add(name, read(base+".crt"), read(base+".key"))
		}
	}
	api := secrets[manifests.APIServer].Data
	add(pki.FrontProxyCA, api[manifests.SecretKey(manifests.FileFrontProxyCACert)], nil)
	add(pki.EtcdCA, api[manifests.SecretKey(manifests.FileEtcdCACert)], nil)
	return cas
}

// renewDir renews the certificates in the files of dir (and its subdirectories if
// recursive; the kubelet's and the checkpoints' are not ours to renew). A file whose
// content is an entry of copies gets that entry's new content; each file it renews is
// added to copies, for the directories renewed after it.
func renewDir(r Renewer, dir string, recursive bool, copies map[string]copy) ([]Renewal, error) {
	files := map[string][]byte{}
	modes := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			if p != dir && (!recursive || rel == "checkpoints" || rel == "manifests") {
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !(strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".conf")) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)], modes[filepath.ToSlash(rel)] = data, info.Mode().Perm()
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Copies of renewed Secret entries first; then what is left is renewed on its own.
	own := map[string][]byte{}
	var copied []Renewal
	for rel, data := range files {
		c, ok := copies[string(data)]
		if !ok || len(data) == 0 {
			own[rel] = data
			continue
		}
		if !r.DryRun {
			if err := writeKeeping(filepath.Join(dir, filepath.FromSlash(rel)), c.data, modes[rel]); err != nil {
				return nil, err
			}
		}
		if strings.HasSuffix(rel, ".key") {
			continue
		}
		rn := Renewal{Name: strings.TrimSuffix(rel, ".crt"), Where: dir, CopyOf: c.from}
		if old := certOf(data); old != nil {
			rn.Subject, rn.Serial, rn.NotAfter = old.Subject.String(), old.SerialNumber.Text(16), old.NotAfter
		}
		if nw := certOf(c.data); nw != nil {
			rn.NewSerial, rn.NewNotAfter = nw.SerialNumber.Text(16), nw.NotAfter
		}
		copied = append(copied, rn)
	}
	out, done, err := r.Files(dir, own)
	if err != nil {
		return nil, err
	}
	for rel, data := range out {
		if bytes.Equal(data, own[rel]) {
			continue
		}
		// A copy of this file in a directory renewed later gets the same renewal.
		copies[string(own[rel])] = copy{data: data, from: filepath.Join(dir, filepath.FromSlash(rel))}
		if !r.DryRun {
			if err := writeKeeping(filepath.Join(dir, filepath.FromSlash(rel)), data, modes[rel]); err != nil {
				return nil, err
			}
		}
	}
	return append(done, copied...), nil
}

// copy is the renewed content of a Secret entry, and which Secret it is in.
type copy struct {
	data []byte
	from string
}

// writeKeeping replaces the file at p with data, keeping its mode (keys stay 0600).
func writeKeeping(p string, data []byte, mode fs.FileMode) error {
	_, err := host.WriteFile(p, data, mode)
	return err
}

// AnnotationCertificatesRenewed is set on the pod template of a component whose Secret
// `certs renew` changed: the new value rolls its pods, which read the new certificates.
const AnnotationCertificatesRenewed = "selfkube.io/certificates-renewed"

// roll rolls the workload of component and waits until every pod runs the new template.
// The operator's apply does not own the annotation, so it neither removes it nor sees the
// roll as drift.
func roll(ctx context.Context, o RenewOptions, component string) (err error) {
	step := o.Status.Start("rolling " + component + " onto its renewed certificates")
	defer step.Done(&err)
	stamp := o.Now().UTC().Format(time.RFC3339)
	patch := []byte(fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, AnnotationCertificatesRenewed, stamp))
	apps := o.Client.AppsV1()
	var rolled func(context.Context) (bool, error)
	if component == manifests.APIServer {
		ds, err := apps.DaemonSets(manifests.Namespace).Patch(ctx, component, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "selfkube-certs"})
		if err != nil {
			return fmt.Errorf("rolling the DaemonSet %s: %w", component, err)
		}
		gen := ds.Generation
		rolled = func(ctx context.Context) (bool, error) {
			ds, err := apps.DaemonSets(manifests.Namespace).Get(ctx, component, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			return daemonSetRolled(ds, gen), nil
		}
	} else {
		d, err := apps.Deployments(manifests.Namespace).Patch(ctx, component, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "selfkube-certs"})
		if err != nil {
			return fmt.Errorf("rolling the Deployment %s: %w", component, err)
		}
		gen := d.Generation
		rolled = func(ctx context.Context) (bool, error) {
			d, err := apps.Deployments(manifests.Namespace).Get(ctx, component, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			return deploymentRolled(d, gen), nil
		}
	}
	return node.Poll(ctx, time.Second, o.RollTimeout, component+" rolled onto the renewed certificates", rolled)
}

func daemonSetRolled(ds *appsv1.DaemonSet, gen int64) bool {
	s := ds.Status
	return s.ObservedGeneration >= gen && s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
		s.NumberAvailable == s.DesiredNumberScheduled && s.NumberUnavailable == 0
}

func deploymentRolled(d *appsv1.Deployment, gen int64) bool {
	s := d.Status
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return s.ObservedGeneration >= gen && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}
