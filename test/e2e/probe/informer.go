package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

const (
	// InformerSyncTimeout bounds StartInformer's wait for the first list.
	InformerSyncTimeout = 30 * time.Second
	// CreateTimeout bounds one create of WriteConfigMaps.
	CreateTimeout = 10 * time.Second
)

// Informer is a client-go informer of the ConfigMaps with a label in one namespace; it records
// when it first saw each of them.
type Informer struct {
	Namespace, Selector string

	cancel context.CancelFunc
	done   chan struct{}

	mu             sync.Mutex
	seen           map[string]time.Time
	watchErrors    int
	lastWatchError string
}

// StartInformerForConfig starts an Informer with the identity of cfg (which is not modified).
func StartInformerForConfig(ctx context.Context, cfg *rest.Config, namespace, labelSelector string) (*Informer, error) {
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, err
	}
	return StartInformer(ctx, cs, namespace, labelSelector)
}

// StartInformer starts an informer on cs of the ConfigMaps in namespace that match
// labelSelector, and waits (at most InformerSyncTimeout) until its first list is done. It
// runs until Stop or until ctx ends.
func StartInformer(ctx context.Context, cs kubernetes.Interface, namespace, labelSelector string) (*Informer, error) {
	if _, err := labels.Parse(labelSelector); err != nil {
		return nil, fmt.Errorf("probe: label selector %q: %w", labelSelector, err)
	}
	i := &Informer{Namespace: namespace, Selector: labelSelector, seen: map[string]time.Time{}, done: make(chan struct{})}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelSelector }))
	inf := factory.Core().V1().ConfigMaps().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    i.saw,
		UpdateFunc: func(_, obj any) { i.saw(obj) },
	}); err != nil {
		return nil, err
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		i.mu.Lock()
		i.watchErrors++
		i.lastWatchError = err.Error()
		i.mu.Unlock()
	}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	i.cancel = cancel
	go func() {
		defer close(i.done)
		inf.RunWithContext(runCtx)
	}()
	syncCtx, cancelSync := context.WithTimeout(runCtx, InformerSyncTimeout)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		i.Stop()
		i.mu.Lock()
		defer i.mu.Unlock()
		return nil, fmt.Errorf("probe: the informer of ConfigMaps %q in %s did not sync (%d list/watch errors, last: %s)",
			labelSelector, namespace, i.watchErrors, i.lastWatchError)
	}
	return i, nil
}

func (i *Informer) saw(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	now := time.Now()
	i.mu.Lock()
	if _, ok := i.seen[cm.Name]; !ok {
		i.seen[cm.Name] = now
	}
	i.mu.Unlock()
}

// Stop stops the informer and waits until it has ended.
func (i *Informer) Stop() {
	i.cancel()
	<-i.done
}

// Missing returns the names the informer has not seen.
func (i *Informer) Missing(names []string) []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var missing []string
	for _, n := range names {
		if _, ok := i.seen[n]; !ok {
			missing = append(missing, n)
		}
	}
	return missing
}

// WaitMissing waits until the informer has seen every name, at most grace (or until ctx
// ends), and returns the names it has still not seen.
func (i *Informer) WaitMissing(ctx context.Context, names []string, grace time.Duration) []string {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		missing := i.Missing(names)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return missing
		case <-deadline.C:
			return i.Missing(names)
		case <-tick.C:
		}
	}
}

// Check waits (at most grace) for the informer to see every ConfigMap w created and reports
// which it never saw and how long after its create answered it saw the others.
func (i *Informer) Check(ctx context.Context, w Written, grace time.Duration) InformerReport {
	rep := InformerReport{Created: len(w.Created), Missing: i.WaitMissing(ctx, w.Created, grace), WriteFailures: w.Failures}
	i.mu.Lock()
	defer i.mu.Unlock()
	rep.WatchErrors, rep.LastWatchError = i.watchErrors, i.lastWatchError
	var delays []time.Duration
	for _, n := range w.Created {
		seen, ok := i.seen[n]
		if !ok {
			continue
		}
		delays = append(delays, max(0, seen.Sub(w.CreatedAt[n])))
	}
	sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
	rep.P50, rep.P99 = percentile(delays, 0.5), percentile(delays, 0.99)
	if len(delays) > 0 {
		rep.Max = delays[len(delays)-1]
	}
	return rep
}

// InformerReport is the result of Informer.Check.
type InformerReport struct {
	Created int
	Missing []string // created, never seen: must be none
	// Delay from a create's answer to the informer seeing the object.
	P50, P99, Max time.Duration
	// List/watch errors the informer's reflector reported (it re-lists after them).
	WatchErrors    int
	LastWatchError string
	// WriteFailures are the creates that failed (Err does not count them: a scenario
	// says which it tolerates).
	WriteFailures []Failure
}

// Err fails when a created ConfigMap was never seen (or nothing was created).
func (r InformerReport) Err() error {
	switch {
	case r.Created == 0:
		return errors.New("informer: no ConfigMap was created")
	case len(r.Missing) > 0:
		return fmt.Errorf("informer: never saw %d of %d created ConfigMaps: %s", len(r.Missing), r.Created, strings.Join(r.Missing, ", "))
	}
	return nil
}

func (r InformerReport) String() string {
	s := fmt.Sprintf("informer: saw %d of %d created ConfigMaps, delay p50 %s p99 %s max %s, %d watch errors",
		r.Created-len(r.Missing), r.Created, fmtDuration(r.P50), fmtDuration(r.P99), fmtDuration(r.Max), r.WatchErrors)
	if r.LastWatchError != "" {
		s += " (last: " + r.LastWatchError + ")"
	}
	if len(r.Missing) > 0 {
		s += "; never saw " + strings.Join(r.Missing, ", ")
	}
	if n := len(r.WriteFailures); n > 0 {
		s += fmt.Sprintf("; %d creates failed, first: %s", n, r.WriteFailures[0])
	}
	return s
}

// Written is what WriteConfigMaps did.
type Written struct {
	Namespace string
	Sent      int                  // creates sent
	Created   []string             // names whose create succeeded, in the order they were sent
	CreatedAt map[string]time.Time // when each create answered
	Failures  []Failure            // failed creates (their object may exist anyway)
}

// WriteConfigMaps creates n ConfigMaps in namespace with the labels of label ("key=value" or
// "k1=v1,k2=v2", the selector an Informer watches) at a fixed rate a second, each create
// started in its own goroutine without waiting for earlier ones and bounded by CreateTimeout.
// It returns when every create has answered; the error tells of bad arguments, failed creates
// and creates not sent because ctx ended. Names are "probe-RANDOM-INDEX".
func WriteConfigMaps(ctx context.Context, cs kubernetes.Interface, namespace, label string, n int, rate float64) (Written, error) {
	w := Written{Namespace: namespace, CreatedAt: map[string]time.Time{}}
	lbls, err := labels.ConvertSelectorToLabelsMap(label)
	if err != nil {
		return w, fmt.Errorf("probe: label %q: %w", label, err)
	}
	if n <= 0 || rate <= 0 {
		return w, fmt.Errorf("probe: %d ConfigMaps at %g/s", n, rate)
	}
	var random [4]byte
	if _, err := rand.Read(random[:]); err != nil {
		return w, err
	}
	prefix := "probe-" + hex.EncodeToString(random[:])

	type outcome struct {
		index int
		name  string
		at    time.Time
		fail  *Failure
	}
	outcomes := make([]outcome, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	reqCtx := context.WithoutCancel(ctx)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
sending:
	for index := range n {
		if index > 0 {
			select {
			case <-ctx.Done():
				break sending
			case <-tick.C:
			}
		}
		w.Sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("%s-%d", prefix, index)
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: lbls},
				Data:       map[string]string{"index": fmt.Sprint(index)},
			}
			cctx, cancel := context.WithTimeout(reqCtx, CreateTimeout)
			defer cancel()
			sent := time.Now()
			_, err := cs.CoreV1().ConfigMaps(namespace).Create(cctx, cm, metav1.CreateOptions{})
			o := outcome{index: index, name: name, at: time.Now()}
			if err != nil {
				kind := KindOther
				if errors.Is(cctx.Err(), context.DeadlineExceeded) {
					kind = KindTimeout
				}
				o.fail = &Failure{Sent: sent, Latency: o.at.Sub(sent), Kind: kind, Err: fmt.Sprintf("creating %s: %v", name, err)}
			}
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(outcomes, func(a, b int) bool { return outcomes[a].index < outcomes[b].index })
	for _, o := range outcomes {
		if o.fail != nil {
			w.Failures = append(w.Failures, *o.fail)
			continue
		}
		w.Created = append(w.Created, o.name)
		w.CreatedAt[o.name] = o.at
	}
	var errs []error
	if w.Sent < n {
		errs = append(errs, fmt.Errorf("sent only %d of %d creates: %w", w.Sent, n, ctx.Err()))
	}
	if len(w.Failures) > 0 {
		errs = append(errs, fmt.Errorf("%d of %d creates failed; first: %s", len(w.Failures), w.Sent, w.Failures[0]))
	}
	if len(errs) > 0 {
		return w, fmt.Errorf("probe: writing ConfigMaps in %s: %w", namespace, errors.Join(errs...))
	}
	return w, nil
}
