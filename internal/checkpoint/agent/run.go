package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/certagent"
	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/etcdagent"
	"github.com/selfkube/selfkube/internal/fence"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
)

// Options are the settings of `selfkube checkpointer`, one flag each.
type Options struct {
	NodeName, PodName  string
	Kubeconfig         string // empty: in-cluster
	CRISocket          string
	CheckpointsDir     string
	ManifestsDir       string
	MetricsBindAddress string
	Interval           time.Duration
	// EtcdPKIDir, when set, runs the etcd part of the node agent (package etcdagent)
	// with etcd's CA and healthcheck client certificate there; EtcdSnapshotDir is where
	// it keeps snapshots.
	EtcdPKIDir      string
	EtcdSnapshotDir string
	// EtcdSnapshotInterval (0: none) and EtcdSnapshotKeep schedule snapshots.
	EtcdSnapshotInterval time.Duration
	EtcdSnapshotKeep     int
	// RotateCertificates runs the certificate part of the node agent (package
	// certagent), which looks every CertificateCheckInterval.
	RotateCertificates       bool
	CertificateCheckInterval time.Duration
}

// DefaultOptions are the DaemonSet's settings.
func DefaultOptions() Options {
	return Options{
		CRISocket:                "unix:///run/containerd/containerd.sock",
		CheckpointsDir:           checkpoint.CheckpointsDir,
		ManifestsDir:             "/etc/kubernetes/manifests",
		MetricsBindAddress:       fmt.Sprintf("127.0.0.1:%d", checkpoint.CheckpointerMetricsPort),
		Interval:                 time.Second,
		EtcdSnapshotDir:          etcdagent.DefaultSnapshotDir,
		CertificateCheckInterval: certagent.DefaultEvery,
	}
}

// Components are what `selfkube checkpointer` runs with component.Run: the Events of the
// checkpointer's own pod (when PodName is set: `kubectl describe pod` shows them), then
// the agent, with its API client and CRI connection (which the agent's Stop closes). The
// options serve the agent's /healthz and /metrics on MetricsBindAddress.
func Components(opts Options, log *slog.Logger) (component.Options, []component.Component, error) {
	metrics := NewMetrics()
	run := component.Options{Address: opts.MetricsBindAddress, Metrics: metrics, Log: log}
	nodeName, err := component.NodeName(opts.NodeName)
	if err != nil {
		return run, nil, err
	}
	client, err := component.Client(opts.Kubeconfig, "")
	if err != nil {
		return run, nil, err
	}
	rt, err := DialCRI(opts.CRISocket)
	if err != nil {
		return run, nil, err
	}
	a := &Agent{
		Fence:  fence.NFTables{ProcNet: "/proc/thread-self/net"},
		Client: client, Runtime: rt, NodeName: nodeName, Namespace: manifests.Namespace,
		Store:    checkpoint.Store{Dir: opts.CheckpointsDir, ManifestsDir: opts.ManifestsDir},
		Interval: opts.Interval, Timeout: 2 * time.Second, RefreshEvery: 5 * time.Minute,
		Log: log, Metrics: metrics, Now: time.Now,
		release: func() { _ = rt.Close() }, metricsAddr: opts.MetricsBindAddress,
	}
	a.life.Name = "checkpointer"
	var components []component.Component
	var sink component.EventSink = discard{}
	if opts.PodName != "" {
		// The broadcaster retries, so events of an outage arrive when the API is back.
		events := &component.Events{
			Client: client, Namespace: manifests.Namespace,
			Source: corev1.EventSource{Component: "selfkube-checkpointer", Host: nodeName},
		}
		sink = podEvents{events: events, ref: &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: manifests.Namespace, Name: opts.PodName}}
		a.Events = sink
		components = append(components, events)
	}
	components = append(components, a)
	var dyn dynamic.Interface
	if opts.EtcdPKIDir != "" || opts.RotateCertificates {
		cfg, err := component.RESTConfig(opts.Kubeconfig, "")
		if err != nil {
			return run, nil, err
		}
		if dyn, err = dynamic.NewForConfig(cfg); err != nil {
			return run, nil, err
		}
	}
	if opts.RotateCertificates {
		components = append(components, &certagent.Agent{
			Client: client, Dynamic: dyn, Node: nodeName, Layout: host.Default, Every: opts.CertificateCheckInterval,
			Events: sink, Log: log.With("part", "cert-agent"),
		})
	}
	if opts.EtcdPKIDir != "" {
		components = append(components, &etcdagent.Agent{
			Client: dyn, Node: nodeName, ManifestsDir: opts.ManifestsDir, SnapshotDir: opts.EtcdSnapshotDir,
			PKIDir: opts.EtcdPKIDir, Events: sink, Log: log.With("part", "etcd-agent"),
			Interval: opts.EtcdSnapshotInterval, KeepScheduled: opts.EtcdSnapshotKeep,
		})
	}
	return run, components, nil
}

// discard is the EventSink without a pod to record on.
type discard struct{}

func (discard) Event(string, string, string) {}

// podEvents records on the checkpointer's pod, once events is initialized.
type podEvents struct {
	events *component.Events
	ref    *corev1.ObjectReference
}

func (p podEvents) Event(eventType, reason, message string) {
	if rec := p.events.Recorder(); rec != nil {
		rec.Event(p.ref, eventType, reason, message)
	}
}

// BootOptions are the settings of `selfkube checkpointer boot`.
type BootOptions struct {
	Kubeconfig     string // the kubelet's: where the API is, and the CA to check it
	CRISocket      string
	CheckpointsDir string
	ManifestsDir   string
	// RuntimeWait is how long to wait for the container runtime to answer.
	RuntimeWait time.Duration
}

// Boot runs before the kubelet starts (its unit's ExecStartPre): it activates every
// checkpoint the kubelet will need because the API cannot tell it what to run, so that a
// rebooted control-plane node starts its apiserver as fast as a static-pod one. Nothing
// is retired or removed here: the agent does that once the API is back. It returns the
// checkpoints it activated.
func Boot(ctx context.Context, opts BootOptions, log *slog.Logger) ([]string, error) {
	store := checkpoint.Store{Dir: opts.CheckpointsDir, ManifestsDir: opts.ManifestsDir}
	names, err := store.Names()
	if err != nil || len(names) == 0 {
		return nil, err
	}
	reachable := apiAnswers(ctx, opts.Kubeconfig, log)
	local := Local{}
	if rt, err := DialCRI(opts.CRISocket); err == nil {
		local = observeWithin(ctx, rt, opts.RuntimeWait, log)
		rt.Close()
	}
	unlock, err := store.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var activated []string
	now := time.Now()
	for _, name := range names {
		seen := checkpoint.Observed{
			At: now, APIReachable: reachable,
			ParentRunning: local.Running[name], Present: store.Present(name), Active: store.Active(name),
		}
		if activateAtBoot(seen) {
			if err := store.Activate(name); err != nil {
				return activated, err
			}
			activated = append(activated, name)
		}
	}
	return activated, nil
}

// activateAtBoot is Boot's decision for one checkpoint: whether checkpoint.Next activates
// it on a first observation (a fresh State). seen is what Boot can observe: whether the
// API answers, whether the parent runs here, and the disk. Without credentials Boot
// cannot list pods, so the rest is assumed: the parent is bound here, not Ready, and
// Ready nowhere else, which makes Next leave the checkpoint to the agent when the API
// answers. Only an activation is carried out: Boot never retires or removes.
func activateAtBoot(seen checkpoint.Observed) bool {
	o := seen
	o.ParentBound, o.ParentReady, o.ReadyElsewhere = true, false, false
	_, a := checkpoint.Next(checkpoint.State{}, o)
	return a == checkpoint.Activate
}

// observeWithin asks the runtime until it answers or wait passes; a runtime that does
// not answer runs nothing the kubelet started (it is the one that would have).
func observeWithin(ctx context.Context, rt Runtime, wait time.Duration, log *slog.Logger) Local {
	deadline := time.Now().Add(wait)
	for {
		octx, cancel := context.WithTimeout(ctx, time.Second)
		l, err := rt.Observe(octx)
		cancel()
		if err == nil {
			return l
		}
		if time.Now().After(deadline) {
			log.Warn("the container runtime does not answer; assuming it runs nothing", "err", err)
			return Local{}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// apiAnswers reports whether the API the kubelet uses answers /readyz within 2 s.
func apiAnswers(ctx context.Context, kubeconfig string, log *slog.Logger) bool {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		log.Warn("reading the kubelet's kubeconfig; treating the API as unreachable", "err", err)
		return false
	}
	cfg.Timeout = 2 * time.Second
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		log.Info("the API does not answer", "server", cfg.Host, "err", err)
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
