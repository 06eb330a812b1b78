//go:build e2e

package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/keyutil"

	"github.com/selfkube/selfkube/test/e2e/framework"
	"github.com/selfkube/selfkube/test/e2e/probe"
)

// probeNamespace holds what the availability probes read and the informer watches.
const probeNamespace = "e2e-probe"

// availabilityTargets sets up, with the set-up client cs, the three identities an
// availability figure counts (none of them in system:masters, so each one is authorized
// like a real client): a user certificate bound to the `view` ClusterRole by RBAC, a
// ServiceAccount token bound to a namespaced Role, and node n's kubelet credential; and
// a keep-alive client of the user. server is the URL every target talks to. targets[0]
// is the user.
func availabilityTargets(ctx context.Context, t *testing.T, cs kubernetes.Interface, n *framework.Node, server string) []probe.Target {
	t.Helper()
	targets, err := rbacTargets(ctx, cs, n, server)
	if err != nil {
		t.Fatal(err)
	}
	kubelet, err := kubeletTarget(n, server)
	if err != nil {
		t.Fatal(err)
	}
	return []probe.Target{targets[0], targets[1], kubelet, targets[2]}
}

// rbacTargets sets up, with cs, the identities authorized by RBAC bindings: the user (bound
// to `view`), the ServiceAccount (a Role in probeNamespace) and the user's keep-alive
// client, in that order. It can run as soon as the apiserver answers cs.
func rbacTargets(ctx context.Context, cs kubernetes.Interface, n *framework.Node, server string) ([]probe.Target, error) {
	caData, err := os.ReadFile(n.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		return nil, err
	}
	var errs []error
	ensure := func(what string, err error) {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("creating %s: %w", what, err))
		}
	}

	// A user authorized by RBAC: a client certificate from the cluster CA.
	const user = "e2e-prober"
	tlsDir := n.HostPath("/var/lib/selfkube/assets/tls") // selfkube's init node
	if _, err := os.Stat(filepath.Join(tlsDir, "ca.key")); err != nil {
		tlsDir = n.HostPath("/etc/kubernetes/pki") // kubeadm's
	}
	certPEM, keyPEM, err := userCertificate(tlsDir, user)
	if err != nil {
		return nil, err
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	ensure("the prober user's binding", err)

	// A ServiceAccount with a Role in one namespace.
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probeNamespace}}, metav1.CreateOptions{})
	ensure("the probe namespace", err)
	_, err = cs.CoreV1().ServiceAccounts(probeNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "prober"}}, metav1.CreateOptions{})
	ensure("the prober ServiceAccount", err)
	_, err = cs.RbacV1().Roles(probeNamespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "prober"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	ensure("the prober Role", err)
	_, err = cs.RbacV1().RoleBindings(probeNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prober"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "prober"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prober", Namespace: probeNamespace}},
	}, metav1.CreateOptions{})
	ensure("the prober RoleBinding", err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	tr, err := cs.CoreV1().ServiceAccounts(probeNamespace).CreateToken(ctx, "prober", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("a token for the prober ServiceAccount: %w", err)
	}

	userTarget := probe.Target{Name: "RBAC user", Path: "/api/v1/namespaces/default/configmaps?limit=1",
		Config: &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: caData, CertData: certPEM, KeyData: keyPEM}}}
	return []probe.Target{
		userTarget,
		{Name: "ServiceAccount", Path: "/api/v1/namespaces/" + probeNamespace + "/configmaps?limit=1",
			Config: &rest.Config{Host: server, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: caData}}},
		probe.KeepAlive(userTarget),
	}, nil
}

// kubeletTarget is node n's kubelet reading its own Node, with its rotated client
// certificate (which exists once the kubelet's first CSR was approved).
func kubeletTarget(n *framework.Node, server string) (probe.Target, error) {
	caData, err := os.ReadFile(n.HostPath("/etc/kubernetes/pki/ca.crt"))
	if err != nil {
		return probe.Target{}, err
	}
	pem, err := kubeletCredentialFile(n)
	if err != nil {
		return probe.Target{}, err
	}
	return probe.Target{Name: "kubelet", Path: "/api/v1/nodes/" + n.Name,
		Config: &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: caData, CertFile: pem, KeyFile: pem}}}, nil
}

func ptrTo[T any](v T) *T { return &v }

// userCertificate issues a client certificate for user (no groups) from the cluster CA
// in tlsDir, as an administrator would for a person.
func userCertificate(tlsDir, user string) (certPEM, keyPEM []byte, err error) {
	caCertPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(caCertPEM)
	if block == nil {
		return nil, nil, errors.New("ca.crt holds no PEM")
	}
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	caKeyAny, err := keyutil.PrivateKeyFromFile(filepath.Join(tlsDir, "ca.key"))
	if err != nil {
		return nil, nil, err
	}
	caKey, ok := caKeyAny.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("the CA key is a %T", caKeyAny)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: user},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// measureAvailability probes targets while during runs, from their first 2xx, and has an
// informer (of the first target's identity) see ConfigMaps written at 5/s meanwhile. It
// logs the table and returns the prober's report and the informer's.
func measureAvailability(ctx context.Context, t *testing.T, cs kubernetes.Interface, scenario string, targets []probe.Target, during func()) (probe.Report, probe.InformerReport) {
	t.Helper()
	return measureAvailabilityWith(ctx, t, cs, probe.Options{}, scenario, targets, during)
}

// measureAvailabilityWith is measureAvailability with the prober's options (a lower rate
// where many targets would otherwise saturate the test machine's CPU with TLS handshakes,
// which the prober reports as timeouts of every server alike).
func measureAvailabilityWith(ctx context.Context, t *testing.T, cs kubernetes.Interface, opts probe.Options, scenario string, targets []probe.Target, during func()) (probe.Report, probe.InformerReport) {
	t.Helper()
	inf, err := probe.StartInformerForConfig(ctx, targets[0].Config, probeNamespace, "e2e-scenario")
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Stop()
	written := make(chan probe.Written, 1)
	wctx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	rep := probeDuring(ctx, t, opts, targets, func() {
		go func() {
			w, _ := probe.WriteConfigMaps(wctx, cs, probeNamespace, "e2e-scenario="+scenario, 1000, 5)
			written <- w
		}()
		during()
	})
	stopWriting()
	w := <-written
	ir := inf.Check(ctx, w, 10*time.Second)
	o := opts.WithDefaults()
	t.Logf("availability during %s (new TLS connection per request at %g/s, %s limit; keep-alive at %g/s):\n%s\ninformer: %+v", scenario, o.Rate, o.Timeout, o.KeepAliveRate, rep.Table(), ir)
	return rep, ir
}

// probeDuring probes targets while during runs: from 2 s before it (every target
// answers first: its window opens at its first 2xx) to 3 s after it (what the last
// change costs shows after it).
func probeDuring(ctx context.Context, t *testing.T, opts probe.Options, targets []probe.Target, during func()) probe.Report {
	t.Helper()
	p, err := probe.Start(ctx, opts, targets...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	time.Sleep(2 * time.Second)
	during()
	time.Sleep(3 * time.Second)
	return p.Stop()
}

// atServer returns target as it would talk to server instead, named after where.
func atServer(target probe.Target, server, where string) probe.Target {
	cfg := rest.CopyConfig(target.Config)
	cfg.Host = server
	target.Config = cfg
	target.Name += " via " + where
	return target
}

// requireNoGap fails t unless the measurement is valid (every target answered and the
// prober kept its rate), no client lost a request, and the informer saw every object.
func requireNoGap(t *testing.T, rep probe.Report, informed probe.InformerReport) {
	t.Helper()
	for _, tr := range rep.Targets {
		if tr.OK == 0 || float64(tr.Counted) < probe.MinSentRatio*tr.Intended {
			t.Errorf("%s: %d answered of %d counted, %.0f intended: the measurement is not valid", tr.Name, tr.OK, tr.Counted, tr.Intended)
		}
	}
	if err := rep.Err(); err != nil {
		t.Errorf("clients lost requests: %v", err)
	}
	if err := informed.Err(); err != nil {
		t.Errorf("the informer: %v", err)
	}
}

// requireOnlySlowAnswers is requireNoGap for a machine too small for its cluster: a
// request may time out (the server answered too slowly), but none may be refused,
// denied (403), reset or cut off, which is what reaching the wrong apiserver looks like.
// The timeouts are logged; they are part of the open "No API gap" issue.
func requireOnlySlowAnswers(t *testing.T, rep probe.Report) {
	t.Helper()
	for _, tr := range rep.Targets {
		if tr.OK == 0 || float64(tr.Counted) < probe.MinSentRatio*tr.Intended {
			t.Errorf("%s: %d answered of %d counted, %.0f intended: the measurement is not valid", tr.Name, tr.OK, tr.Counted, tr.Intended)
		}
		for kind, n := range tr.ByKind {
			if kind != "timeout" {
				t.Errorf("%s: %d requests failed with %s:\n%s", tr.Name, n, kind, rep.Table())
			}
		}
	}
	if err := rep.Err(); err != nil {
		t.Logf("requests over the 2 s limit (not yet closed, see docs/no-api-gap.md): %v", err)
	}
}

// bootProbe is the prober's rate while a whole control plane starts on one node (init, a
// reboot), where the node has no CPU to spare: at the default 20 new TLS connections a
// second per identity the handshakes cost the node what it needs, and the prober itself,
// starved, could not keep its rate (clean-clone CI on 2026-12-07: 264 of 301 intended
// requests sent, so the measurement was not valid). At 5/s a gap of 200 ms still shows.
var bootProbe = probe.Options{Rate: 5, KeepAliveRate: 2}

// requireNoRefusal is for a scenario that starts a whole control plane on a node while the
// probe counts (init, a reboot): it fails t on any request refused, denied, reset or cut
// off after each identity's first 2xx, and when an identity got no answer at all; a
// timeout (an answer slower than the 2 s limit while the node starts every pod at once)
// is logged, not failed, as over three nodes (docs/no-api-gap.md, "Not done yet").
// make bench counts the timeouts beside kubeadm's.
func requireNoRefusal(t *testing.T, scenario string, rep probe.Report) {
	t.Helper()
	t.Logf("availability during %s:\n%s", scenario, rep.Table())
	requireOnlySlowAnswers(t, rep)
}

// requireNoFailureVia fails t for any failed request (a timeout too) of the targets whose
// name contains where: the path the issue asks to lose nothing.
func requireNoFailureVia(t *testing.T, rep probe.Report, where string) {
	t.Helper()
	seen := false
	for _, tr := range rep.Targets {
		if !strings.Contains(tr.Name, where) {
			continue
		}
		seen = true
		if tr.Failed > 0 {
			t.Errorf("%s: %d of %d requests failed (%v), want none", tr.Name, tr.Failed, tr.Counted, tr.ByKind)
		}
	}
	if !seen {
		t.Errorf("no target goes via %s", where)
	}
}

// requireNoLoss fails t unless the measurement is valid (every target answered and the
// prober kept its rate) and no client lost a request; it logs the table.
func requireNoLoss(t *testing.T, scenario string, rep probe.Report) {
	t.Helper()
	t.Logf("availability during %s:\n%s", scenario, rep.Table())
	if err := rep.Err(); err != nil {
		t.Errorf("%s: %v", scenario, err)
	}
}

// earlyProbe probes node n's availability identities from as early as each can exist,
// for a scenario whose API is not up when it starts (init): the RBAC user, its
// keep-alive client and the ServiceAccount once the set-up client gets an answer and
// their bindings are made, the kubelet once its rotated client certificate is on disk.
// Each target's window opens at its own first 2xx.
type earlyProbe struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	probers  []*probe.Prober
	rbacErr  error // why the RBAC identities never started, if they did not
	kubelErr error // why the kubelet never started, if it did not
}

func startEarlyProbe(ctx context.Context, setup func() (*rest.Config, error), n *framework.Node, server string, opts probe.Options) *earlyProbe {
	loopCtx, cancel := context.WithCancel(ctx)
	e := &earlyProbe{cancel: cancel, done: make(chan struct{}), rbacErr: errors.New("not tried"), kubelErr: errors.New("not tried")}
	go func() {
		defer close(e.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			e.mu.Lock()
			pending := e.rbacErr != nil || e.kubelErr != nil
			e.mu.Unlock()
			if !pending {
				return
			}
			select {
			case <-loopCtx.Done():
				return
			case <-tick.C:
			}
			e.tryRBAC(ctx, loopCtx, setup, n, server, opts)
			e.tryKubelet(ctx, n, server, opts)
		}
	}()
	return e
}

func (e *earlyProbe) started(p *probe.Prober, err error, into *error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		*into = err
		return
	}
	e.probers = append(e.probers, p)
	*into = nil
}

func (e *earlyProbe) tryRBAC(ctx, loopCtx context.Context, setup func() (*rest.Config, error), n *framework.Node, server string, opts probe.Options) {
	e.mu.Lock()
	done := e.rbacErr == nil
	e.mu.Unlock()
	if done {
		return
	}
	cfg, err := setup()
	if err != nil {
		e.started(nil, err, &e.rbacErr)
		return
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		e.started(nil, err, &e.rbacErr)
		return
	}
	targets, err := rbacTargets(loopCtx, cs, n, server)
	if err != nil {
		e.started(nil, err, &e.rbacErr)
		return
	}
	// The probers run on ctx, not loopCtx: Stop ends the search, then them.
	p, err := probe.Start(ctx, opts, targets...)
	e.started(p, err, &e.rbacErr)
}

func (e *earlyProbe) tryKubelet(ctx context.Context, n *framework.Node, server string, opts probe.Options) {
	e.mu.Lock()
	done := e.kubelErr == nil
	e.mu.Unlock()
	if done {
		return
	}
	target, err := kubeletTarget(n, server)
	if err != nil {
		e.started(nil, err, &e.kubelErr)
		return
	}
	p, err := probe.Start(ctx, opts, target)
	e.started(p, err, &e.kubelErr)
}

// Stop stops the probers and returns their reports as one, and an error naming the
// identities that never started (the measurement is then incomplete).
func (e *earlyProbe) Stop() (probe.Report, error) {
	e.cancel()
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	var rep probe.Report
	for _, p := range e.probers {
		r := p.Stop()
		if rep.Started.IsZero() || r.Started.Before(rep.Started) {
			rep.Started = r.Started
		}
		rep.Stopped, rep.Timeout = r.Stopped, r.Timeout
		rep.Targets = append(rep.Targets, r.Targets...)
	}
	var errs []error
	if e.rbacErr != nil {
		errs = append(errs, fmt.Errorf("the RBAC user and the ServiceAccount never started: %w", e.rbacErr))
	}
	if e.kubelErr != nil {
		errs = append(errs, fmt.Errorf("the kubelet never started: %w", e.kubelErr))
	}
	return rep, errors.Join(errs...)
}

// rebootProbed powers nodes off, starts a prober of targets while they are off (so that
// each target's window opens at its first 2xx after the boot), and powers them on again.
// It returns the prober, which the caller stops, and when the first node's kubelet
// started.
func rebootProbed(ctx context.Context, t *testing.T, opts probe.Options, targets []probe.Target, nodes ...*framework.Node) (*probe.Prober, time.Time) {
	t.Helper()
	for _, n := range nodes {
		if err := n.PowerOff(); err != nil {
			t.Fatal(err)
		}
	}
	p, err := probe.Start(ctx, opts, targets...)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.PowerOn(ctx); err != nil {
			p.Stop()
			t.Fatal(err)
		}
	}
	booted, err := nodes[0].KubeletStarted()
	if err != nil {
		p.Stop()
		t.Fatal(err)
	}
	return p, booted
}

// firstAnswers says, per target, how long after start its window opened (its first 2xx).
func firstAnswers(rep probe.Report, start time.Time) string {
	var parts []string
	for _, tr := range rep.Targets {
		if tr.WindowStart.IsZero() {
			parts = append(parts, tr.Name+" never")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f s", tr.Name, tr.WindowStart.Sub(start).Seconds()))
	}
	return strings.Join(parts, ", ")
}
