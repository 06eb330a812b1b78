package certagent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/certs"
	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	window := 6 * time.Minute
	listed := []certs.Renewal{
		{Name: "apiserver", Where: "secret kube-system/kube-apiserver", NotAfter: now.Add(5 * time.Minute)},      // due
		{Name: "etcd/server", Where: "/etc/kubernetes/pki", NotAfter: now.Add(-time.Minute)},                     // expired: due
		{Name: "admin.conf", Where: "/etc/kubernetes", NotAfter: now.Add(9 * time.Minute)},                       // enters in 3 min
		{Name: "scheduler.conf", Where: "secret kube-system/kube-scheduler", NotAfter: now.Add(8 * time.Minute)}, // enters in 2 min
		{Name: "tls/apiserver", Where: "/var/lib/selfkube/assets", CopyOf: "secret kube-system/kube-apiserver"},  // follows its Secret
		{Name: "stray", Where: "/etc/kubernetes/pki", NotAfter: now, Skipped: "signed by someone else"},          // not ours
		{Name: "exact", Where: "/etc/kubernetes", NotAfter: now.Add(window)},                                     // just entering: due
	}
	p := Decide(listed, window, now)
	want := []string{"apiserver in secret kube-system/kube-apiserver", "etcd/server in /etc/kubernetes/pki", "exact in /etc/kubernetes"}
	if !slices.Equal(p.Due, want) {
		t.Errorf("due %v, want %v", p.Due, want)
	}
	if !p.NextDue.Equal(now.Add(2 * time.Minute)) {
		t.Errorf("next due %v, want in 2 minutes", p.NextDue)
	}
	if p := Decide(listed[2:4], window, now); len(p.Due) != 0 || !p.NextDue.Equal(now.Add(2*time.Minute)) {
		t.Errorf("nothing due: %+v", p)
	}
}

type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) Event(typ, reason, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, typ+" "+reason+": "+msg)
}

func (e *events) has(reason string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.ContainsFunc(e.list, func(s string) bool { return strings.Contains(s, " "+reason+": ") })
}

// renewer is a fake certs.Renew over one certificate per name: a renewal gives it a new
// serial and a new expiry, validity after now.
type renewer struct {
	mu       sync.Mutex
	notAfter map[string]time.Time
	serial   map[string]int
	within   []time.Duration // what each real renewal was asked
	fail     error
}

func (r *renewer) renew(_ context.Context, o certs.RenewOptions) ([]certs.Renewal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []certs.Renewal
	names := make([]string, 0, len(r.notAfter))
	for n := range r.notAfter {
		names = append(names, n)
	}
	slices.Sort(names)
	if !o.DryRun {
		r.within = append(r.within, o.Within)
		if r.fail != nil {
			return nil, r.fail
		}
	}
	for _, n := range names {
		rn := certs.Renewal{Name: n, Where: "/etc/kubernetes", NotAfter: r.notAfter[n]}
		if !o.DryRun {
			if o.Within > 0 && r.notAfter[n].Sub(o.Now()) >= o.Within {
				continue
			}
			r.serial[n]++
			r.notAfter[n] = o.Now().Add(10 * time.Minute)
			rn.NewSerial, rn.NewNotAfter = "renewed", r.notAfter[n]
		}
		out = append(out, rn)
	}
	return out, nil
}

func newAgent(t *testing.T, r *renewer, clock *time.Time) (*Agent, *dynamicfake.FakeDynamicClient, *events) {
	t.Helper()
	cfg := configtest.Config(t, nil)
	cfg.Cluster.Certificates.Validity = &metav1.Duration{Duration: 10 * time.Minute}
	cfg.Cluster.Certificates.RenewBefore = &metav1.Duration{Duration: 6 * time.Minute}
	clusterYAML, err := yaml.Marshal(&cfg.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewSimpleClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: manifests.ClusterConfigName, Namespace: manifests.Namespace},
		Data: map[string]string{manifests.ClusterConfigKey: string(clusterYAML)}})
	cp := &controlplane.ControlPlane{ObjectMeta: metav1.ObjectMeta{Name: controlplane.Name}, Spec: controlplane.SpecFrom(&cfg.Cluster)}
	u, err := cp.Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{controlplane.GroupVersionResource: controlplane.Kind + "List"}, u)
	ev := &events{}
	a := &Agent{Client: cs, Dynamic: dyn, Node: "cp1", Every: time.Minute, Events: ev, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return *clock }, Renew: r.renew}
	if err := a.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, dyn, ev
}

func reported(t *testing.T, dyn *dynamicfake.FakeDynamicClient) controlplane.CertificateRenewal {
	t.Helper()
	u, err := dyn.Resource(controlplane.GroupVersionResource).Get(context.Background(), controlplane.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Status.Certificates["cp1"]
}

// With a 10-minute validity and a 6-minute window: nothing is renewed while more than 6
// minutes are left (the status says when the first enters the window); once one is
// within it, it is renewed together with those entering it before the next look, said
// in an Event and the status; a look with nothing new writes nothing.
func TestSyncRenewsWhatIsDueAndSaysSo(t *testing.T) {
	clock := now
	r := &renewer{serial: map[string]int{},
		notAfter: map[string]time.Time{"admin.conf": now.Add(10 * time.Minute), "etcd/server": now.Add(10*time.Minute + 30*time.Second)}}
	a, dyn, ev := newAgent(t, r, &clock)
	ctx := context.Background()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st := reported(t, dyn)
	if len(r.within) != 0 || st.NextDue == nil || !st.NextDue.Time.Equal(now.Add(4*time.Minute)) || len(st.Renewed) != 0 {
		t.Fatalf("fresh certificates: renewals %v, status %+v; want none, and the next due in 4 minutes", r.within, st)
	}
	dyn.ClearActions()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(dyn.Actions()); n != 0 {
		t.Errorf("a look with nothing new wrote the status (%d actions)", n)
	}

	clock = now.Add(4*time.Minute + time.Second) // admin.conf has 5:59 left; etcd/server 6:29
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.within) != 1 || r.within[0] != 7*time.Minute {
		t.Errorf("renewals asked %v, want one of those within the window and the next look (7m)", r.within)
	}
	if r.serial["admin.conf"] != 1 || r.serial["etcd/server"] != 1 {
		t.Errorf("renewed %v: want both, the one due and the one due before the next look", r.serial)
	}
	st = reported(t, dyn)
	if !slices.Equal(st.Renewed, []string{"admin.conf in /etc/kubernetes", "etcd/server in /etc/kubernetes"}) || !st.Time.Time.Equal(clock) || st.Error != "" {
		t.Errorf("status %+v", st)
	}
	if !ev.has("CertificatesRenewed") {
		t.Errorf("events %v: want CertificatesRenewed", ev.list)
	}

	// The next look reports the next due time and keeps what was renewed when.
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st = reported(t, dyn)
	if len(st.Renewed) != 2 || !st.Time.Time.Equal(clock) || st.NextDue == nil || !st.NextDue.Time.Equal(clock.Add(4*time.Minute)) {
		t.Errorf("after the renewal: status %+v", st)
	}
}

// A renewal that fails is said (a Warning, the status' error) and tried again; the next
// success clears the error.
func TestAFailedRenewalIsSaidAndRetried(t *testing.T) {
	clock := now
	r := &renewer{serial: map[string]int{}, notAfter: map[string]time.Time{"admin.conf": now.Add(time.Minute)},
		fail: errors.New("updating the Secret kube-system/kube-apiserver (nothing of it changed): conflict")}
	a, dyn, ev := newAgent(t, r, &clock)
	ctx := context.Background()
	if err := a.Sync(ctx); err == nil {
		t.Fatal("a failed renewal: no error")
	}
	if st := reported(t, dyn); !strings.Contains(st.Error, "conflict") || !ev.has("CertificateRenewalFailed") {
		t.Errorf("status %+v, events %v: want the failure said", st, ev.list)
	}
	r.fail = nil
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := reported(t, dyn); st.Error != "" || len(st.Renewed) != 1 {
		t.Errorf("after a successful retry: status %+v", st)
	}
}

// A renewal whose report fails (the API the agent talks to has just rolled) is still
// said by the next look's report.
func TestARenewalIsReportedEvenIfTheFirstReportFails(t *testing.T) {
	clock := now
	r := &renewer{serial: map[string]int{}, notAfter: map[string]time.Time{"admin.conf": now.Add(time.Minute)}}
	a, dyn, _ := newAgent(t, r, &clock)
	failed := false
	dyn.PrependReactor("patch", "controlplanes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !failed {
			failed = true
			return true, nil, errors.New("http2: client connection lost")
		}
		return false, nil, nil
	})
	ctx := context.Background()
	if err := a.Sync(ctx); err == nil || r.serial["admin.conf"] != 1 {
		t.Fatalf("the renewal with a failing report: %v, renewed %v; want it renewed and the report's error", err, r.serial)
	}
	clock = clock.Add(time.Second)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r.serial["admin.conf"] != 1 {
		t.Errorf("renewed again: %v", r.serial)
	}
	if st := reported(t, dyn); !slices.Equal(st.Renewed, []string{"admin.conf in /etc/kubernetes"}) || !st.Time.Time.Equal(now) || st.NextDue == nil {
		t.Errorf("status after the retry: %+v; want the renewal of %v and the next due time", st, now)
	}
}
