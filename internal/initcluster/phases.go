package initcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/fence"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/kubelet"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
	"github.com/selfkube/selfkube/internal/render"
)

// temporaryManifests are the static pods of the temporary control plane.
var temporaryManifests = []string{temporaryAPIServer, manifests.ControllerManagerStaticPod, manifests.SchedulerStaticPod}

const temporaryAPIServer = manifests.APIServerStaticPod

func (d *Data) tlsDir() string  { return filepath.Join(d.AssetDir(), render.TLSDir) }
func (d *Data) authDir() string { return filepath.Join(d.AssetDir(), render.AuthDir) }

func (d *Data) report(lines []string) {
	for _, l := range lines {
		d.Log.Debug(l)
	}
}

// certs ensures the CAs, certificates and keys (and the key of Secrets in etcd): made
// once, kept like the CA.
// The asset directory is owned before anything is written to it: from then on the
// record exists and says how far init got.
func certs(_ context.Context, d *Data) error {
	if err := d.own(d.AssetDir()); err != nil {
		return err
	}
	_, err := d.render().Certificates()
	return err
}

func kubeconfigs(_ context.Context, d *Data) error {
	if _, err := d.render().Kubeconfigs(); err != nil {
		return err
	}
	files := map[string]string{
		filepath.Join(d.authDir(), kubeconfig.Admin):      d.Layout.AdminKubeconfig(),
		filepath.Join(d.authDir(), kubeconfig.SuperAdmin): d.Layout.SuperAdminKubeconfig(),
	}
	for _, dst := range files {
		if err := d.own(dst); err != nil {
			return err
		}
	}
	return d.copyFiles(files)
}

// copyFiles copies src→dst: keys, kubeconfigs and any file that only its owner may read
// (the encryption configuration) 0600, everything else 0644.
func (d *Data) copyFiles(files map[string]string) error {
	for src, dst := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(src, ".key") || strings.HasSuffix(src, ".conf") || st.Mode().Perm()&0o077 == 0 {
			mode = 0o600
		}
		a, err := host.WriteFile(dst, data, mode)
		if err != nil {
			return err
		}
		d.Log.Debug(string(a) + " " + dst)
	}
	return nil
}

// copyTree copies every file below src to dst with copyFiles' modes. The trees it copies
// hold keys: dst and every directory below it are made 0700 before any file is written,
// whatever their modes were and whichever file comes first.
func (d *Data) copyTree(src, dst string) error {
	files := map[string]string{}
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return host.EnsurePrivateDir(filepath.Join(dst, rel))
		case !strings.HasPrefix(e.Name(), "."):
			files[p] = filepath.Join(dst, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return d.copyFiles(files)
}

// render is this run's one pass over the asset directory: the certs and kubeconfigs
// phases run its first steps, the first phase that needs the manifests the rest (and any
// step no earlier phase of this run did, for `init phase NAME`).
func (d *Data) render() *render.Pass {
	if d.pass == nil {
		d.pass = render.NewPass(d.AssetDir(), d.Cfg, render.Options{Log: d.Log})
	}
	return d.pass
}

// renderAssets returns the rendered objects, rendering what this run has not yet.
func (d *Data) renderAssets() (*render.Result, error) { return d.render().Manifests() }

// tcpMigrateReq is the sysctl that makes a closing SO_REUSEPORT listener hand its queued
// connections to another listener of the group instead of resetting them: without it a
// client that connects just as the old apiserver closes its socket (at the teardown, or
// at a rolling update) gets a reset.
const tcpMigrateReq = "/proc/sys/net/ipv4/tcp_migrate_req"

// enableRequestMigration turns tcpMigrateReq on for this host's network namespace.
// deploy/sysctl/90-selfkube.conf keeps it on across reboots.
func (d *Data) enableRequestMigration() {
	if err := os.WriteFile(tcpMigrateReq, []byte("1"), 0o644); err != nil {
		d.Status.Infof("warning: cannot enable net.ipv4.tcp_migrate_req (%v): a connection that arrives as an apiserver "+
			"closes its shared port may be reset (Linux 5.14 or later has the setting)", err)
	}
}

func kubeletStart(ctx context.Context, d *Data) error {
	d.enableRequestMigration()
	// The static-pod directory must exist before the kubelet starts: it then sees new
	// manifests at once instead of retrying with a back-off of up to 20 s.
	if err := os.MkdirAll(d.Layout.ManifestsDir(), 0o755); err != nil {
		return err
	}
	if err := d.copyFiles(map[string]string{
		filepath.Join(d.tlsDir(), "ca.crt"):            filepath.Join(d.Layout.PKIDir(), "ca.crt"),
		filepath.Join(d.authDir(), kubeconfig.Kubelet): d.Layout.KubeletKubeconfig(),
	}); err != nil {
		return err
	}
	lines, err := kubelet.Write(d.Cfg, d.Layout)
	if err != nil {
		return err
	}
	d.report(lines)
	return kubelet.WaitHealthy(ctx, kubelet.HealthzURL, d.APITimeout)
}

// writeStaticPod writes one rendered static pod into the kubelet's directory and records
// that selfkube owns it.
func (d *Data) writeStaticPod(name string) error {
	res, err := d.renderAssets()
	if err != nil {
		return err
	}
	for _, a := range res.Bootstrap {
		if path.Base(a.Path) != name {
			continue
		}
		data, err := manifests.Encode(a.Object)
		if err != nil {
			return err
		}
		dst := filepath.Join(d.Layout.ManifestsDir(), name)
		act, err := host.WriteFile(dst, data, 0o600)
		if err != nil {
			return err
		}
		d.Log.Debug(string(act) + " " + dst)
		return d.own(dst)
	}
	return fmt.Errorf("no static pod %s was rendered", name)
}

func etcdStaticPod(_ context.Context, d *Data) error {
	// etcd's data is every Secret of the cluster: 0700 before etcd starts (and on a
	// directory a previous run or another tool left with another mode).
	if err := host.EnsurePrivateDir(d.Layout.HostPath(d.Cfg.Cluster.Etcd.Local.DataDir)); err != nil {
		return fmt.Errorf("preparing etcd's data directory: %w", err)
	}
	if err := d.copyTree(filepath.Join(d.tlsDir(), "etcd"), filepath.Join(d.Layout.PKIDir(), "etcd")); err != nil {
		return err
	}
	return d.writeStaticPod(manifests.EtcdStaticPod)
}

func temporaryControlPlane(_ context.Context, d *Data) error {
	// Render first: the files copied below include what render writes into tls/ (the
	// audit policy), also when no etcd phase rendered before (external etcd).
	if _, err := d.renderAssets(); err != nil {
		return err
	}
	// The temporary control plane reads its credentials from the host until the
	// hand-over; the self-hosted one reads them from Secrets.
	if err := host.EnsurePrivateDir(d.Layout.BootstrapSecretsDir()); err != nil {
		return err
	}
	if a := &d.Cfg.Cluster.APIServer.Audit; a.On() {
		// The kubelet would make the log directory 0755 (DirectoryOrCreate).
		if err := host.EnsurePrivateDir(d.Layout.HostPath(a.LogDir)); err != nil {
			return fmt.Errorf("preparing the audit log directory: %w", err)
		}
	}
	for _, sub := range []string{render.TLSDir, render.AuthDir} {
		if err := d.copyTree(filepath.Join(d.AssetDir(), sub), filepath.Join(d.Layout.BootstrapSecretsDir(), sub)); err != nil {
			return err
		}
	}
	for _, m := range temporaryManifests {
		if err := d.writeStaticPod(m); err != nil {
			return err
		}
	}
	return nil
}

func waitAPI(ctx context.Context, d *Data) error {
	client, restCfg, err := d.Client()
	if err != nil {
		return err
	}
	what := "waiting for kube-apiserver " + restCfg.Host + "/readyz (see its container and logs: crictl ps -a --name kube-apiserver, " +
		"then crictl logs <id>; the same for etcd; and the kubelet's log: journalctl -u kubelet)"
	return node.Poll(ctx, 250*time.Millisecond, d.APITimeout, what, func(ctx context.Context) (bool, error) {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, err
	})
}

func markControlPlane(ctx context.Context, d *Data) error {
	client, _, err := d.Client()
	if err != nil {
		return err
	}
	return node.MarkControlPlane(ctx, client, d.Cfg.Node.Name, d.Cfg.Node.Taints, d.APITimeout)
}

func applySelfHosted(ctx context.Context, d *Data) error { return d.applyAssets(ctx, false) }

func applyAddons(ctx context.Context, d *Data) error { return d.applyAssets(ctx, true) }

// applyAssets applies the rendered self-hosted objects that are (or are not) add-ons.
func (d *Data) applyAssets(ctx context.Context, addons bool) error {
	res, err := d.renderAssets()
	if err != nil {
		return err
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	for _, asset := range res.SelfHosted {
		if asset.Addon != addons {
			continue
		}
		if err := a.Object(ctx, asset.Object); err != nil {
			return fmt.Errorf("%s: %w", asset.Path, err)
		}
		if ds, ok := asset.Object.(*appsv1.DaemonSet); ok && ds.Name == manifests.ProxyName {
			// CoreDNS comes next: it must find the kubernetes Service's rules in place.
			if err := d.waitKubeProxy(ctx); err != nil {
				return err
			}
		}
	}
	d.Log.Debug("applied", "objects", len(res.SelfHosted))
	if addons {
		return nil
	}
	// The ControlPlane resource, made once: from then on it is the operator's to follow
	// and the administrator's to change, and a later run leaves it alone.
	cp := &controlplane.ControlPlane{
		TypeMeta:   metav1.TypeMeta{APIVersion: controlplane.Group + "/" + controlplane.Version, Kind: controlplane.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: controlplane.Name},
		Spec:       controlplane.SpecFrom(&d.Cfg.Cluster),
	}
	u, err := cp.Unstructured()
	if err != nil {
		return err
	}
	created, err := a.Create(ctx, u)
	if err != nil {
		return err
	}
	if !created {
		d.Log.Debug("using the existing ControlPlane " + controlplane.Name)
	}
	return nil
}

// waitKubeProxy waits until kube-proxy on this node is Ready, that is, has written the
// node's Service rules.
func (d *Data) waitKubeProxy(ctx context.Context) error {
	client, _, err := d.Client()
	if err != nil {
		return err
	}
	what := "waiting for kube-proxy on node " + d.Cfg.Node.Name + " to be Ready (see kubectl -n kube-system describe pod -l " + manifests.ProxySelector + ")"
	return node.Poll(ctx, 500*time.Millisecond, d.APITimeout, what, func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
			LabelSelector: manifests.ProxySelector, FieldSelector: "spec.nodeName=" + d.Cfg.Node.Name})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			if node.PodReady(&pods.Items[i]) {
				return true, nil
			}
		}
		return false, nil
	})
}

// applier applies objects to the cluster with selfkube's field manager.
func (d *Data) applier() (*apply.Applier, error) {
	_, restCfg, err := d.Client()
	if err != nil {
		return nil, err
	}
	if d.applierFor != nil {
		return d.applierFor(restCfg)
	}
	return apply.New(restCfg)
}

// kubeadmCompat publishes the configuration a stock `kubeadm join` reads.
func kubeadmCompat(ctx context.Context, d *Data) error {
	kc, err := kubelet.Configuration(d.Cfg, d.Layout)
	if err != nil {
		return err
	}
	objs, err := manifests.KubeadmCompat(d.Cfg, kc)
	if err != nil {
		return err
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := a.Object(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func (d *Data) caPool() (*x509.CertPool, error) {
	path := filepath.Join(d.tlsDir(), "ca.crt")
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate: put the cluster CA's certificate back there (the one that matches ca.key beside it), "+
			"or run `selfkube reset` to start over", path)
	}
	return pool, nil
}

func (d *Data) servingTLS() (*tls.Config, error) {
	pool, err := d.caPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

// leaderLeases are the leases the temporary scheduler and controller manager hold until
// the teardown; their self-hosted successors must take them over.
var leaderLeases = []string{"kube-scheduler", "kube-controller-manager"}

func teardown(ctx context.Context, d *Data) error {
	client, _, err := d.Client()
	if err != nil {
		return err
	}
	// Who leads now is the temporary control plane (it started first): remember it, so
	// that post-handover can tell a successor from the old leader's last renewals. A
	// teardown that an earlier run began (and was killed in) may already have stopped the
	// temporary leaders, and their successors lead now: what it remembered stands.
	if d.Record.HandOver == nil {
		h := &host.HandOver{Started: time.Now(), TemporaryLeaders: map[string]string{}}
		for _, name := range leaderLeases {
			l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil {
				h.TemporaryLeaders[name] = *l.Spec.HolderIdentity
			}
		}
		d.Record.HandOver = h
		if err := d.Record.Save(); err != nil {
			return err
		}
	}
	remove := func(m string) error {
		p := filepath.Join(d.Layout.ManifestsDir(), m)
		if !d.Record.Owns(p) {
			d.Status.Infof("leaving %s: selfkube did not write it", p)
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the temporary %s: %w", m, err)
		}
		return d.Record.Disown(p)
	}
	for _, m := range temporaryManifests {
		if m == temporaryAPIServer {
			continue
		}
		if err := remove(m); err != nil {
			return err
		}
	}
	// The temporary apiserver listens on the node's address, the self-hosted one on every
	// address: new connections go to the temporary one until its listener closes, and one
	// that arrives as it closes would be reset. Hold them meanwhile; their retransmitted
	// SYNs reach the self-hosted apiserver.
	addr, err := netip.ParseAddr(d.Cfg.Node.AdvertiseAddress)
	if err != nil {
		return fmt.Errorf("the advertise address %q: %w", d.Cfg.Node.AdvertiseAddress, err)
	}
	nft := fence.NFTables{ProcNet: "/proc/thread-self/net", Table: fence.InitTable}
	if err := fence.Fenced(nft, netip.AddrPortFrom(addr, config.DefaultAPIServerPort), time.Sleep, d.Log,
		func() error { return remove(temporaryAPIServer) }); err != nil {
		return err
	}
	d.Record.HandOver.Finished = true
	return d.Record.Save()
}

func postHandover(ctx context.Context, d *Data) error {
	// The kubelet stops the temporary pods now; they have read their credentials long
	// ago and need the files no more. Removed here, not in teardown, which a run killed
	// after recording the hand-over would skip.
	if err := os.RemoveAll(d.Layout.BootstrapSecretsDir()); err != nil {
		return fmt.Errorf("removing the temporary credentials: %w", err)
	}
	client, _, err := d.Client()
	if err != nil {
		return err
	}
	for _, lease := range leaderLeases {
		var old string
		var started time.Time
		if h := d.Record.HandOver; h != nil {
			old, started = h.TemporaryLeaders[lease], h.Started
		}
		err := node.Poll(ctx, 250*time.Millisecond, d.APITimeout, "waiting for a self-hosted "+lease+" to lead", func(ctx context.Context) (bool, error) {
			l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, lease, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return leaseTakenOver(l, old, started), nil
		})
		if err != nil {
			return err
		}
	}
	return node.Poll(ctx, 500*time.Millisecond, d.APITimeout, "waiting for node "+d.Cfg.Node.Name+" to be Ready", func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, d.Cfg.Node.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return node.Ready(n), nil
	})
}

// leaseTakenOver reports whether a leader other than the temporary one (oldHolder)
// holds l and renewed it after the teardown began.
func leaseTakenOver(l *coordinationv1.Lease, oldHolder string, since time.Time) bool {
	return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != oldHolder &&
		l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since)
}

func bootstrapToken(ctx context.Context, d *Data) error {
	client, _, err := d.Client()
	if err != nil {
		return err
	}
	token, err := bootstrap.GenerateToken()
	if err != nil {
		return err
	}
	if err := bootstrap.Create(ctx, client, bootstrap.TokenSpec{Token: token, TTL: d.TokenTTL,
		Description: "made by selfkube init"}, time.Now()); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(d.tlsDir(), "ca.crt"))
	if err != nil {
		return err
	}
	d.joinCmd, err = bootstrap.JoinCommand(d.Cfg.Cluster.ControlPlaneEndpoint, token, ca)
	return err
}

// JoinCommand is the command that joins further nodes (set by the bootstrap-token phase).
func (d *Data) JoinCommand() string { return d.joinCmd }
