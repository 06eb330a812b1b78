package join

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/pki"
)

// controlPlaneCerts fetches the CA keys from the cluster (decrypted with the certificate
// key) and checks they belong to the CA discovery pinned. It writes nothing.
func controlPlaneCerts(ctx context.Context, d *Data) error {
	_, err := d.CA(ctx)
	return err
}

// CA is the cluster CA handed off to this control-plane join: fetched on first use.
func (d *Data) CA(ctx context.Context) (*pki.KeyPair, error) {
	if d.ca != nil {
		return d.ca, nil
	}
	cluster, err := d.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	client, err := d.tokenClient(ctx)
	if err != nil {
		return nil, err
	}
	files, err := bootstrap.DownloadCerts(ctx, client, d.CertificateKey)
	if err != nil {
		return nil, fmt.Errorf("%w\nnothing was written on this node", err)
	}
	for _, n := range []string{bootstrap.HandOffCACert, bootstrap.HandOffCAKey, bootstrap.HandOffEtcdCACert, bootstrap.HandOffEtcdCAKey} {
		if len(files[n]) == 0 {
			return nil, fmt.Errorf("the control-plane hand-off lacks %s: make a new join command with `selfkube token create --control-plane --print-join-command`\nnothing was written on this node", n)
		}
	}
	if !bytes.Equal(bytes.TrimSpace(files[bootstrap.HandOffCACert]), bytes.TrimSpace(cluster.CAData)) {
		return nil, fmt.Errorf("the handed-off CA is not the cluster CA that discovery verified: refusing it\nnothing was written on this node")
	}
	ca, err := keyPair(files[bootstrap.HandOffCACert], files[bootstrap.HandOffCAKey])
	if err != nil {
		return nil, fmt.Errorf("the handed-off cluster CA: %w", err)
	}
	if _, err := keyPair(files[bootstrap.HandOffEtcdCACert], files[bootstrap.HandOffEtcdCAKey]); err != nil {
		return nil, fmt.Errorf("the handed-off etcd CA: %w", err)
	}
	d.ca, d.handOff = ca, files
	return ca, nil
}

// writeEtcdCerts writes the etcd CA of the hand-off and issues this node's etcd
// certificates with it.
func writeEtcdCerts(ctx context.Context, d *Data) error {
	if _, err := d.CA(ctx); err != nil {
		return err
	}
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	pkiDir := d.Layout.PKIDir()
	etcdDir := filepath.Join(pkiDir, "etcd")
	// Directories that hold keys, or etcd's data (all of the cluster's Secrets), and the
	// audit log: root's only, whatever created them before.
	private := []string{etcdDir}
	if l := cfg.Cluster.Etcd.Local; l != nil {
		private = append(private, d.Layout.HostPath(l.DataDir))
	}
	if a := cfg.Cluster.APIServer.Audit; a.On() {
		private = append(private, d.Layout.HostPath(a.LogDir))
	}
	for _, dir := range private {
		if err := host.EnsurePrivateDir(dir); err != nil {
			return err
		}
	}
	if err := d.write(filepath.Join(etcdDir, "ca.crt"), d.handOff[bootstrap.HandOffEtcdCACert], 0o644); err != nil {
		return err
	}
	if err := d.write(filepath.Join(etcdDir, "ca.key"), d.handOff[bootstrap.HandOffEtcdCAKey], 0o600); err != nil {
		return err
	}
	etcdCA, err := pki.LoadCA(pkiDir, pki.EtcdCA)
	if err != nil {
		return err
	}
	specs, err := pki.Specs(cfg)
	if err != nil {
		return err
	}
	c := cfg.Cluster.Certificates
	issuer := pki.Issuer{KeyAlgorithm: c.KeyAlgorithm, Validity: c.Validity.Duration, Now: time.Now()}
	for _, s := range specs {
		if s.Name != pki.EtcdServer && s.Name != pki.EtcdPeer && s.Name != pki.EtcdHealthcheckClient {
			continue
		}
		kp, err := issuer.Issue(s, etcdCA)
		if err != nil {
			return fmt.Errorf("issuing %s: %w", s.Name, err)
		}
		key, err := pki.EncodeKey(kp.Key)
		if err != nil {
			return err
		}
		base := filepath.Join(pkiDir, filepath.FromSlash(s.Name))
		if err := d.write(base+".crt", pki.EncodeCertificate(kp.Cert), 0o644); err != nil {
			return err
		}
		if err := d.write(base+".key", key, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func keyPair(certPEM, keyPEM []byte) (*pki.KeyPair, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, fmt.Errorf("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return &pki.KeyPair{Cert: cert, Key: key}, nil
}

// issueKubeconfig signs, with the handed-off CA, the client certificate of the kubeconfig
// file (kubeconfig.Admin, kubeconfig.Kubelet) and returns that kubeconfig, for server.
func (d *Data) issueKubeconfig(ctx context.Context, file, server string) ([]byte, error) {
	ca, err := d.CA(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := d.Config(ctx)
	if err != nil {
		return nil, err
	}
	for _, spec := range kubeconfig.Specs(cfg) {
		if spec.File == file {
			c := cfg.Cluster.Certificates
			issuer := pki.Issuer{KeyAlgorithm: c.KeyAlgorithm, Validity: c.Validity.Duration, Now: time.Now()}
			return kubeconfig.Build(spec, server, ca, issuer)
		}
	}
	return nil, fmt.Errorf("no kubeconfig %s", file)
}

// adminKubeconfig is admin.conf, made with the handed-off CA (once per join).
func (d *Data) adminKubeconfig(ctx context.Context) ([]byte, error) {
	if d.adminConf == nil {
		cluster, err := d.Cluster(ctx)
		if err != nil {
			return nil, err
		}
		data, err := d.issueKubeconfig(ctx, kubeconfig.Admin, cluster.Server)
		if err != nil {
			return nil, err
		}
		d.adminConf = data
	}
	return d.adminConf, nil
}

// adminClient is a cluster-admin client made with the handed-off CA. It writes nothing:
// admin.conf is written by the mark-control-plane phase.
func (d *Data) adminClient(ctx context.Context) (kubernetes.Interface, error) {
	if d.admin != nil {
		return d.admin, nil
	}
	data, err := d.adminKubeconfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 15 * time.Second
	d.admin, err = d.client(cfg)
	return d.admin, err
}

// etcdMembers are the client URLs of the other control-plane nodes' etcd members, from
// the Nodes labelled control-plane: found on first use.
func (d *Data) etcdMembers(ctx context.Context) ([]string, error) {
	if len(d.etcdEndpoints) > 0 {
		return d.etcdEndpoints, nil
	}
	cfg, err := d.Config(ctx)
	if err != nil {
		return nil, err
	}
	client, err := d.adminClient(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: node.LabelControlPlane})
	if err != nil {
		return nil, fmt.Errorf("listing the control-plane nodes (their etcd members): %w", err)
	}
	var endpoints, names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && n.Name != cfg.Node.Name {
				endpoints = append(endpoints, etcd.ClientURL(a.Address))
			}
		}
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("no other control-plane node has an InternalIP address (control-plane nodes: %v), so no etcd member "+
			"can be asked: a control-plane join needs the cluster's local etcd; check `kubectl get nodes -l %s -o wide`", names, node.LabelControlPlane)
	}
	d.etcdEndpoints = endpoints
	return endpoints, nil
}

// etcdMember adds this node to etcd as a learner (it votes only once promoted, so a
// join that fails half-way never costs the cluster its quorum) and writes its static pod.
func etcdMember(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	etcdYAML := filepath.Join(d.Layout.ManifestsDir(), manifests.EtcdStaticPod)
	if _, err := os.Stat(etcdYAML); err == nil && d.Record.Has("etcd-member") {
		d.Status.Infof("using the etcd member an earlier run of this join added (%s)", etcdYAML)
		return nil
	}
	if err := writeEtcdCerts(ctx, d); err != nil {
		return err
	}
	endpoints, err := d.etcdMembers(ctx)
	if err != nil {
		return err
	}
	ec, err := etcd.Dial(endpoints, filepath.Join(d.Layout.PKIDir(), "etcd"))
	if err != nil {
		return err
	}
	defer ec.Close()
	self, members, err := ec.AddLearner(ctx, etcd.PeerURL(cfg.Node.AdvertiseAddress))
	if err != nil {
		return err
	}
	d.etcdID = self.ID
	pod := manifests.EtcdMemberPod(cfg, etcd.InitialCluster(members, self, cfg.Node.Name))
	data, err := manifests.Encode(pod)
	if err != nil {
		return err
	}
	if err := d.write(etcdYAML, data, 0o600); err != nil {
		return err
	}
	d.Status.Infof("etcd learner %x added; the kubelet starts it", self.ID)
	return nil
}

// etcdPromote waits for this node's etcd member to catch up and makes it a voter. It
// asks the other members: a learner serves no membership changes.
func etcdPromote(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	endpoints, err := d.etcdMembers(ctx)
	if err != nil {
		return err
	}
	ec, err := etcd.Dial(endpoints, filepath.Join(d.Layout.PKIDir(), "etcd"))
	if err != nil {
		return err
	}
	defer ec.Close()
	pctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	if d.etcdID == 0 { // resumed, or this phase alone: find the member by its peer URL
		members, err := ec.Members(pctx)
		if err != nil {
			return err
		}
		for _, m := range members {
			if slices.Contains(m.PeerURLs, etcd.PeerURL(cfg.Node.AdvertiseAddress)) {
				d.etcdID = m.ID
			}
		}
		if d.etcdID == 0 {
			return fmt.Errorf("etcd has no member with this node's peer URL %s: run the whole join again", etcd.PeerURL(cfg.Node.AdvertiseAddress))
		}
	}
	return ec.Promote(pctx, d.etcdID)
}

// apiServerCert adds this node's name and address to the apiserver certificate that all
// apiservers share (their Secret), so that clients can reach this node's apiserver
// directly. The apiservers reload it without a restart.
func apiServerCert(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	ca, err := d.CA(ctx)
	if err != nil {
		return err
	}
	client, err := d.adminClient(ctx)
	if err != nil {
		return err
	}
	specs, err := pki.Specs(cfg)
	if err != nil {
		return err
	}
	var spec pki.Spec
	for _, s := range specs {
		if s.Name == pki.APIServer {
			spec = s
		}
	}
	certKey, keyKey := manifests.SecretKey(manifests.FileAPIServerCert), manifests.SecretKey(manifests.FileAPIServerKey)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := client.CoreV1().Secrets(manifests.Namespace).Get(ctx, manifests.APIServerSecret, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading the apiserver Secret: %w", err)
		}
		old, err := keyPair(s.Data[certKey], s.Data[keyKey])
		if err != nil {
			return fmt.Errorf("the apiserver Secret: %w", err)
		}
		missing := false
		for _, n := range spec.DNSNames {
			if !slices.Contains(old.Cert.DNSNames, n) {
				missing = true
				old.Cert.DNSNames = append(old.Cert.DNSNames, n)
			}
		}
		for _, ip := range spec.IPs {
			if !slices.ContainsFunc(old.Cert.IPAddresses, ip.Equal) {
				missing = true
				old.Cert.IPAddresses = append(old.Cert.IPAddresses, ip)
			}
		}
		if !missing {
			return nil
		}
		spec.DNSNames, spec.IPs = old.Cert.DNSNames, old.Cert.IPAddresses
		c := cfg.Cluster.Certificates
		kp, err := pki.Issuer{KeyAlgorithm: c.KeyAlgorithm, Validity: c.Validity.Duration, Now: time.Now()}.Issue(spec, ca)
		if err != nil {
			return err
		}
		key, err := pki.EncodeKey(kp.Key)
		if err != nil {
			return err
		}
		s.Data[certKey], s.Data[keyKey] = pki.EncodeCertificate(kp.Cert), key
		_, err = client.CoreV1().Secrets(manifests.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: apply.FieldManager})
		return err
	})
}

func markControlPlane(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	client, err := d.adminClient(ctx)
	if err != nil {
		return err
	}
	// admin.conf, as on the first control-plane node (token create runs with it).
	data, err := d.adminKubeconfig(ctx)
	if err != nil {
		return err
	}
	if err := d.write(d.Layout.AdminKubeconfig(), data, 0o600); err != nil {
		return err
	}
	return node.MarkControlPlane(ctx, client, cfg.Node.Name, d.Node.Taints, d.Timeout)
}

// waitControlPlane waits for the self-hosted apiserver on this node, then spreads the
// controller manager and scheduler: a Deployment whose replicas all run on one node is
// restarted, so that its new pods go to other control-plane nodes.
func waitControlPlane(ctx context.Context, d *Data) error {
	cfg, err := d.Config(ctx)
	if err != nil {
		return err
	}
	client, err := d.adminClient(ctx)
	if err != nil {
		return err
	}
	what := "waiting for the self-hosted apiserver on " + cfg.Node.Name + " to be Ready (see `kubectl -n kube-system describe pod -l " + manifests.ComponentSelector(manifests.APIServer) + "`)"
	err = node.Poll(ctx, 500*time.Millisecond, d.Timeout, what, func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: manifests.ComponentSelector(manifests.APIServer), FieldSelector: "spec.nodeName=" + cfg.Node.Name})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			if node.PodReady(&pods.Items[i]) {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d apiserver pods on the node, none Ready", len(pods.Items))
	})
	if err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		if err := spread(ctx, client, name); err != nil {
			return err
		}
	}
	// The CA keys were handed off for this join: they leave the cluster now, not when the
	// token expires.
	if err := bootstrap.DeleteCerts(ctx, client); err != nil {
		return err
	}
	d.Status.Infof("deleted the control-plane hand-off kube-system/%s", bootstrap.CertsSecretName)
	return nil
}

// spread restarts Deployment name if all its running pods share one node.
func spread(ctx context.Context, client kubernetes.Interface, name string) error {
	dep, err := client.AppsV1().Deployments(manifests.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return err
	}
	pods, err := client.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return err
	}
	nodes := map[string]bool{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
			nodes[p.Spec.NodeName] = true
		}
	}
	if len(nodes) != 1 || dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		return nil
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"selfkube.io/spread-at":%q}}}}}`, time.Now().UTC().Format(time.RFC3339))
	_, err = client.AppsV1().Deployments(manifests.Namespace).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: apply.FieldManager})
	if err != nil {
		return fmt.Errorf("restarting %s to spread it over the control-plane nodes: %w", name, err)
	}
	return nil
}
