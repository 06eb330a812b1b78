package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/fence"
	"github.com/selfkube/selfkube/internal/kubeconfig"
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
}

// DefaultOptions are the DaemonSet's settings.
func DefaultOptions() Options {
	return Options{
		CRISocket:          "unix:///run/containerd/containerd.sock",
		CheckpointsDir:     checkpoint.CheckpointsDir,
		ManifestsDir:       "/etc/kubernetes/manifests",
		MetricsBindAddress: fmt.Sprintf("127.0.0.1:%d", checkpoint.CheckpointerMetricsPort),
		Interval:           time.Second,
	}
}

// Run runs the agent until ctx is done.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	if opts.NodeName == "" {
		opts.NodeName = os.Getenv("NODE_NAME")
	}
	if opts.NodeName == "" {
		return errors.New("the node name is unknown: pass --node-name or set NODE_NAME")
	}
	cfg, err := kubeconfig.RESTConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 0 // per request, from the agent's contexts
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	rt, err := DialCRI(opts.CRISocket)
	if err != nil {
		return err
	}
	defer rt.Close()

	metrics := NewMetrics()
	ln, err := net.Listen("tcp", opts.MetricsBindAddress)
	if err != nil {
		return fmt.Errorf("serving metrics on %s: %w", opts.MetricsBindAddress, err)
	}
	srv := &http.Server{Handler: metrics.Handler(time.Now, 30*time.Second), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	nft := fence.NFTables{ProcNet: "/proc/thread-self/net"}
	if err := nft.Clear(); err != nil {
		log.Warn("cannot check for a fence left behind; hand-backs will not hold connections", "err", err)
	}
	a := &Agent{
		Fence:  nft,
		Client: client, Runtime: rt, NodeName: opts.NodeName, Namespace: manifests.Namespace,
		Store:    checkpoint.Store{Dir: opts.CheckpointsDir, ManifestsDir: opts.ManifestsDir},
		Interval: opts.Interval, Timeout: 2 * time.Second, RefreshEvery: 5 * time.Minute,
		Log: log, Metrics: metrics, Now: time.Now,
	}
	if opts.PodName != "" {
		// Events go to the checkpointer's own pod: `kubectl describe pod` shows them.
		// The broadcaster retries, so events of an outage arrive when the API is back.
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events(manifests.Namespace)})
		defer b.Shutdown()
		rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "selfkube-checkpointer", Host: opts.NodeName})
		a.Events = podEvents{rec: rec, ref: &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: manifests.Namespace, Name: opts.PodName}}
	}
	log.Info("checkpointer started", "node", opts.NodeName, "checkpoints", opts.CheckpointsDir, "metrics", opts.MetricsBindAddress)
	return a.Run(ctx)
}

type podEvents struct {
	rec record.EventRecorder
	ref *corev1.ObjectReference
}

func (p podEvents) Event(eventType, reason, message string) {
	p.rec.Event(p.ref, eventType, reason, message)
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
