// Package certagent is the part of a control-plane node's agent (the checkpointer
// DaemonSet) that rotates the control-plane certificates: once a certificate has less
// than the cluster's certificates.renewBefore left, it reissues it from the cluster's CAs
// as `selfkube certs renew` does (package certs), in the components' Secrets (then rolls
// the component, whose health the roll-out waits for) and in this node's files (etcd's
// certificates, which etcd reads again on each new connection, and the kubeconfigs init
// and join wrote). It says what it renewed in an Event and in the ControlPlane's status,
// under its node's name.
//
// Two nodes may find the same Secret due at once: the Secret's update is conditional on
// the version read, so one of them renews it and the other finds it renewed on its next
// look.
package certagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/selfkube/selfkube/internal/certs"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/host"
)

// Defaults of the agent's settings.
const (
	// DefaultEvery is how often the agent looks at the certificates.
	DefaultEvery = time.Minute
	// DefaultRollTimeout bounds each component's roll-out onto renewed certificates.
	DefaultRollTimeout = 5 * time.Minute
)

// Agent rotates the certificates of the control plane and of its node. It is a
// component.Component: Init checks its settings, Start starts one worker that looks
// every Every, Stop ends it (a renewal under way is finished first).
type Agent struct {
	Client kubernetes.Interface
	// Dynamic reports in the ControlPlane's status.
	Dynamic dynamic.Interface
	Node    string
	// Layout is where the node's files are (as mounted in the agent's pod).
	Layout      host.Layout
	Every       time.Duration
	RollTimeout time.Duration
	Events      component.EventSink
	Log         *slog.Logger
	Now         func() time.Time
	// Renew is certs.Renew by default.
	Renew func(ctx context.Context, o certs.RenewOptions) ([]certs.Renewal, error)

	life   component.Lifecycle
	queue  workqueue.TypedRateLimitingInterface[string]
	cancel context.CancelFunc
	done   sync.WaitGroup
	// last is the last renewal this agent made or tried: what the status says of it until
	// the next, even if reporting it failed once (the API may just have rolled).
	last *controlplane.CertificateRenewal
	// reported is the last status entry written, so that an unchanged look writes nothing.
	reported *controlplane.CertificateRenewal
	// started is when the agent began to look: the status' time before any renewal.
	started time.Time
}

// key is the work queue's one key: the agent looks at everything at once.
const key = "certificates"

// Init implements component.Component.
func (a *Agent) Init(context.Context) error {
	a.life.Name = "cert-agent"
	return a.life.Init(func() error {
		if a.Node == "" || a.Client == nil || a.Dynamic == nil {
			return errors.New("the certificate agent needs a node name and API clients")
		}
		if a.Every <= 0 {
			a.Every = DefaultEvery
		}
		if a.RollTimeout <= 0 {
			a.RollTimeout = DefaultRollTimeout
		}
		if a.Now == nil {
			a.Now = time.Now
		}
		if a.Renew == nil {
			a.Renew = certs.Renew
		}
		a.started = a.Now()
		return nil
	})
}

// Start implements component.Component.
func (a *Agent) Start(ctx context.Context) error {
	return a.life.Start(func() error {
		a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "cert-agent"})
		ctx, a.cancel = context.WithCancel(ctx)
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			defer utilruntime.HandleCrash()
			go func() { <-ctx.Done(); a.queue.ShutDown() }()
			a.queue.Add(key)
			for {
				k, quit := a.queue.Get()
				if quit {
					return
				}
				if err := a.Sync(ctx); err != nil {
					a.Log.Warn("certificate agent: retrying", "err", err)
					a.queue.AddRateLimited(k)
				} else {
					a.queue.Forget(k)
					a.queue.AddAfter(k, a.Every)
				}
				a.queue.Done(k)
			}
		}()
		return nil
	})
}

// Stop implements component.Component.
func (a *Agent) Stop() error {
	return a.life.Stop(func(component.State) error {
		if a.cancel != nil {
			a.cancel()
			a.done.Wait()
		}
		return nil
	})
}

// Plan is what one look decides: whether to renew, and when the next certificate is due.
type Plan struct {
	// Due are the certificates within the renewal window now (their Renewal.Name and
	// Where).
	Due []string
	// NextDue is when the earliest of the others enters the window (zero: none).
	NextDue time.Time
}

// Decide is the agent's decision from the certificates a dry run listed: those with
// less than window left at now are due; of the others, the earliest sets NextDue. Copies
// of a Secret's certificate on the node follow their Secret and decide nothing.
func Decide(listed []certs.Renewal, window time.Duration, now time.Time) Plan {
	var p Plan
	for _, r := range listed {
		if r.CopyOf != "" || r.Skipped != "" || r.NotAfter.IsZero() {
			continue
		}
		enters := r.NotAfter.Add(-window)
		if !enters.After(now) {
			p.Due = append(p.Due, r.Name+" in "+r.Where)
			continue
		}
		if p.NextDue.IsZero() || enters.Before(p.NextDue) {
			p.NextDue = enters
		}
	}
	slices.Sort(p.Due)
	return p
}

// Sync looks once: it lists the certificates (a dry run), renews those due, and reports.
func (a *Agent) Sync(ctx context.Context) error {
	opts := certs.RenewOptions{Layout: a.Layout, Client: a.Client, RollTimeout: a.RollTimeout, Now: a.Now}
	dry := opts
	dry.DryRun = true
	listed, window, err := a.list(ctx, dry)
	if err != nil {
		return err
	}
	plan := Decide(listed, window, a.Now())
	if len(plan.Due) == 0 {
		// Nothing due: the status says the last renewal (or since when the agent looks),
		// without an error (another node may have renewed what failed here), and when
		// the next certificate is due.
		entry := controlplane.CertificateRenewal{Time: metav1.NewTime(a.started)}
		if a.last != nil {
			entry.Time, entry.Renewed = a.last.Time, a.last.Renewed
		}
		if !plan.NextDue.IsZero() {
			entry.NextDue = &metav1.Time{Time: plan.NextDue}
		}
		if a.reported != nil && sameReport(*a.reported, entry) {
			return nil // nothing new to say
		}
		return a.report(ctx, entry)
	}
	entry := controlplane.CertificateRenewal{Time: metav1.NewTime(a.Now())}
	a.Log.Info("renewing certificates within the renewal window", "due", plan.Due, "window", window)
	// Those due before the next look come along: one roll of each component, not two.
	opts.Within = window + a.Every
	done, err := a.Renew(ctx, opts)
	for _, r := range done {
		if r.NewSerial != "" {
			entry.Renewed = append(entry.Renewed, r.Name+" in "+r.Where)
		}
	}
	a.last = &entry
	if err != nil {
		entry.Error = err.Error()
		a.Events.Event(corev1.EventTypeWarning, "CertificateRenewalFailed",
			fmt.Sprintf("renewing %s: %v (renewed: %s)", strings.Join(plan.Due, ", "), err, listOrNone(entry.Renewed)))
		if rerr := a.report(ctx, entry); rerr != nil {
			a.Log.Warn("reporting the failed renewal", "err", rerr)
		}
		return err
	}
	a.Events.Event(corev1.EventTypeNormal, "CertificatesRenewed",
		fmt.Sprintf("renewed within the renewal window of %s: %s", window, listOrNone(entry.Renewed)))
	a.Log.Info("certificates renewed", "renewed", entry.Renewed)
	// The next due is what the next look finds; the report says what was renewed now.
	return a.report(ctx, entry)
}

// list is the dry run: every certificate Renew would renew, and the cluster's window.
func (a *Agent) list(ctx context.Context, dry certs.RenewOptions) ([]certs.Renewal, time.Duration, error) {
	listed, err := a.Renew(ctx, dry)
	if err != nil {
		return nil, 0, err
	}
	window, err := certs.RenewalWindow(ctx, a.Client)
	return listed, window, err
}

// report writes entry into the ControlPlane's status under this node's name.
func (a *Agent) report(ctx context.Context, entry controlplane.CertificateRenewal) error {
	// Every field named (null clears it): a merge patch keeps what it does not name.
	fields := map[string]any{"time": entry.Time, "renewed": nil, "nextDue": nil, "error": nil}
	if len(entry.Renewed) > 0 {
		fields["renewed"] = entry.Renewed
	}
	if entry.NextDue != nil {
		fields["nextDue"] = entry.NextDue
	}
	if entry.Error != "" {
		fields["error"] = entry.Error
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"certificates": map[string]any{a.Node: fields}}})
	if err != nil {
		return err
	}
	_, err = a.Dynamic.Resource(controlplane.GroupVersionResource).Patch(ctx, controlplane.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "selfkube-cert-agent"}, "status")
	if err != nil {
		return fmt.Errorf("reporting the certificates in the ControlPlane's status: %w", err)
	}
	a.reported = &entry
	return nil
}

// sameReport says whether two status entries say the same.
func sameReport(a, b controlplane.CertificateRenewal) bool {
	return a.Time.Equal(&b.Time) && slices.Equal(a.Renewed, b.Renewed) && equalTime(a.NextDue, b.NextDue) && a.Error == b.Error
}

func equalTime(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(b)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
