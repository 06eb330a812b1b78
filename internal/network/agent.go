package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/selfkube/selfkube/internal/component"
)

// Config is what an Agent needs. Components builds it from Options with the real
// kernel; tests build it with fakes.
type Config struct {
	// NodeName is the Node this agent runs on.
	NodeName string
	// Client reads Nodes.
	Client kubernetes.Interface
	// ConflistPath is where the CNI conflist is written (a file in the host's CNI conf dir).
	ConflistPath string
	// ClusterCIDRs exempt pod-to-pod traffic from masquerading; empty means the pod CIDRs
	// of all nodes (see DesiredMasquerade).
	ClusterCIDRs []netip.Prefix
	// ResyncPeriod is how often routes and masquerade rules are checked against the kernel
	// even without a Node event.
	ResyncPeriod time.Duration
	// Routes is the host's routing table.
	Routes RouteTable
	// Masquerade installs the masquerade rules; nil leaves masquerading to someone else.
	Masquerade Masquerader
	// Log receives the agent's progress.
	Log *slog.Logger
}

// Agent is the pod-network agent of one node. It waits for its Node's pod CIDRs, writes
// the bridge CNI conflist for them, keeps a route to every other node's pod CIDRs
// through that node's InternalIP, and masquerades pod traffic that leaves the cluster.
//
// It is a component.Component (the lifecycle shared by selfkube's in-cluster agents; see
// the state diagram there) and a component.Readier: Ready() != nil until the conflist is
// written for the Node's pod CIDRs, nil from then on.
//
// Init checks the configuration and the conf dir and prepares the Node informer; Start
// starts the informer and the sync loop and returns at once; Stop ends both and waits for
// them, and releases the route table and nftables connection Components opened. Every
// Node event and every ResyncPeriod triggers one sync; a failed sync is retried with
// backoff. Stop leaves the conflist, the routes and the masquerade rules in place, so
// pods keep working while the agent restarts. Methods called out of order return a
// *component.OrderError.
type Agent struct {
	cfg Config
	log *slog.Logger
	// release closes what Components opened; nil for an agent built by New alone.
	release func()

	life    component.Lifecycle
	factory informers.SharedInformerFactory
	lister  listersv1.NodeLister
	synced  cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]
	cancel  context.CancelFunc
	done    sync.WaitGroup

	ready       atomic.Bool
	lastSkipped string
}

const syncKey = "sync"

// New returns an agent in state created.
func New(cfg Config) *Agent {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log.With("component", "network")}
	a.life.Name = "network agent"
	return a
}

// Init implements component.Component.
func (a *Agent) Init(_ context.Context) error {
	return a.life.Init(a.init)
}

func (a *Agent) init() error {
	var errs []error
	if a.cfg.NodeName == "" {
		errs = append(errs, errors.New("no node name: set NODE_NAME from the downward API (spec.nodeName) or pass --node-name"))
	}
	if a.cfg.Client == nil {
		errs = append(errs, errors.New("no Kubernetes client"))
	}
	if a.cfg.Routes == nil {
		errs = append(errs, errors.New("no route table"))
	}
	if a.cfg.ResyncPeriod <= 0 {
		errs = append(errs, fmt.Errorf("resync period %s: must be positive", a.cfg.ResyncPeriod))
	}
	if a.cfg.ConflistPath == "" {
		errs = append(errs, errors.New("no conflist path"))
	} else if info, err := os.Stat(filepath.Dir(a.cfg.ConflistPath)); err != nil || !info.IsDir() {
		errs = append(errs, fmt.Errorf("CNI conf dir %s is not a directory (%v): mount the host's /etc/cni/net.d there", filepath.Dir(a.cfg.ConflistPath), err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("initializing the network agent: %w", err)
	}
	a.factory = informers.NewSharedInformerFactory(a.cfg.Client, 0)
	nodes := a.factory.Core().V1().Nodes()
	a.lister = nodes.Lister()
	a.synced = nodes.Informer().HasSynced
	a.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	kick := func(any) { a.queue.Add(syncKey) }
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, n any) { kick(n) },
		DeleteFunc: kick,
	}); err != nil {
		return fmt.Errorf("initializing the network agent: watching nodes: %w", err)
	}
	return nil
}

// Start implements component.Component. It does not wait for the API server: the sync
// loop waits for the Node informer's first list.
func (a *Agent) Start(ctx context.Context) error {
	return a.life.Start(func() error { a.start(ctx); return nil })
}

func (a *Agent) start(ctx context.Context) {
	ctx, a.cancel = context.WithCancel(ctx)
	a.factory.Start(ctx.Done())
	a.done.Add(2)
	go func() {
		defer a.done.Done()
		a.loop(ctx)
	}()
	go func() {
		defer a.done.Done()
		t := time.NewTicker(a.cfg.ResyncPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				a.queue.ShutDown() // ends loop's queue.Get
				return
			case <-t.C:
				a.queue.Add(syncKey)
			}
		}
	}()
	a.log.Info("network agent started", "node", a.cfg.NodeName, "conflist", a.cfg.ConflistPath)
}

// Stop implements component.Component. It leaves the conflist, routes and rules in place.
func (a *Agent) Stop() error {
	return a.life.Stop(func(from component.State) error {
		switch from {
		case component.Running:
			a.cancel()
			a.queue.ShutDown()
			a.done.Wait()
			a.factory.Shutdown()
		case component.Initialized:
			a.queue.ShutDown()
		}
		if a.release != nil {
			a.release()
		}
		a.log.Info("network agent stopped; conflist and routes left in place")
		return nil
	})
}

// Ready implements component.Readier: nil once the conflist for the Node's pod CIDRs has
// been written (or found up to date).
func (a *Agent) Ready() error {
	if a.ready.Load() {
		return nil
	}
	return fmt.Errorf("network agent: waiting for spec.podCIDRs of node %s to write %s", a.cfg.NodeName, a.cfg.ConflistPath)
}

func (a *Agent) loop(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), a.synced) {
		return
	}
	a.queue.Add(syncKey)
	for {
		key, shutdown := a.queue.Get()
		if shutdown {
			return
		}
		if err := a.sync(); err != nil {
			a.log.Error("network sync failed; retrying", "err", err, "retries", a.queue.NumRequeues(key))
			a.queue.AddRateLimited(key)
		} else {
			a.queue.Forget(key)
		}
		a.queue.Done(key)
	}
}

// sync does one pass: conflist, routes, masquerade rules. It goes on after a failure in
// one part and returns all failures.
func (a *Agent) sync() error {
	nodes, err := a.lister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes from the cache: %w", err)
	}
	var self *corev1.Node
	for _, n := range nodes {
		if n.Name == a.cfg.NodeName {
			self = n
		}
	}
	var errs []error
	if self == nil {
		errs = append(errs, fmt.Errorf("node %s not found: check NODE_NAME (the downward API's spec.nodeName)", a.cfg.NodeName))
	} else if err := a.syncConflist(self); err != nil {
		errs = append(errs, err)
	}
	if err := a.syncRoutes(nodes); err != nil {
		errs = append(errs, err)
	}
	if a.cfg.Masquerade != nil && self != nil && len(NodePodCIDRs(self)) > 0 {
		if err := a.cfg.Masquerade.Ensure(DesiredMasquerade(self, nodes, a.cfg.ClusterCIDRs)); err != nil {
			errs = append(errs, fmt.Errorf("masquerade rules: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (a *Agent) syncConflist(self *corev1.Node) error {
	cidrs := NodePodCIDRs(self)
	if len(cidrs) == 0 {
		a.log.Debug("waiting for the node's pod CIDR", "node", self.Name)
		return nil
	}
	content, err := DesiredConflist(cidrs)
	if err != nil {
		return fmt.Errorf("CNI conflist for node %s: %w", self.Name, err)
	}
	wrote, err := writeFileIfChanged(a.cfg.ConflistPath, content, 0o644)
	if err != nil {
		return fmt.Errorf("writing the CNI conflist: %w", err)
	}
	if wrote {
		a.log.Info("wrote CNI conflist", "path", a.cfg.ConflistPath, "podCIDRs", cidrs)
	}
	a.ready.Store(true)
	return nil
}

func (a *Agent) syncRoutes(nodes []*corev1.Node) error {
	desired, skipped := DesiredRoutes(nodes, a.cfg.NodeName)
	if s := fmt.Sprint(skipped); s != a.lastSkipped {
		a.lastSkipped = s
		for _, sk := range skipped {
			a.log.Warn("no route to a node's pods", "node", sk.Node, "reason", sk.Reason)
		}
	}
	current, err := a.cfg.Routes.Owned()
	if err != nil {
		return fmt.Errorf("reading routes: %w", err)
	}
	plan := PlanRoutes(desired, current)
	var errs []error
	for _, r := range plan.Replace {
		if err := a.cfg.Routes.Replace(r); err != nil {
			errs = append(errs, err)
			continue
		}
		a.log.Info("route set", "route", r.String())
	}
	for _, r := range plan.Delete {
		if err := a.cfg.Routes.Delete(r); err != nil {
			errs = append(errs, err)
			continue
		}
		a.log.Info("route deleted", "route", r.String())
	}
	return errors.Join(errs...)
}
