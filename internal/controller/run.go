// Package controller is `selfkube controller`: the in-cluster controllers of selfkube, run
// by the selfkube-controller Deployment on control-plane nodes. Its replicas elect a leader
// (a Lease in kube-system); only the leader runs the controllers: the approver of
// bootstrap kubelet certificates (internal/approver) and the control-plane operator
// (internal/operator).
//
// It runs as a component.Component (Controller, after its component.Events; the lifecycle
// shared by selfkube's in-cluster agents). While running, the leader election goes:
//
//	Start ─▶ campaigning ─(lease won)─▶ leading: informers + controllers
//	              ▲                          │
//	              └──── exit, restarted ◀────┘ lease lost (Failed; never lead twice)
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/approver"
	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/controlplane"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/operator"
	"github.com/selfkube/selfkube/internal/pki"
)

// Name of the Deployment, its ServiceAccount, its Lease and its Events' source.
const Name = manifests.ControllerName

// Options are the settings of `selfkube controller`.
type Options struct {
	Kubeconfig        string // empty: in-cluster
	Identity          string // leader-election identity; default $POD_NAME, then the hostname
	HealthBindAddress string
	LeaseNamespace    string
}

// DefaultHealthPort is the port of /healthz, on loopback.
const DefaultHealthPort = manifests.ControllerHealthPort

// DefaultOptions are the Deployment's settings.
func DefaultOptions() Options {
	return Options{HealthBindAddress: fmt.Sprintf("127.0.0.1:%d", DefaultHealthPort), LeaseNamespace: metav1.NamespaceSystem}
}

// Components are what `selfkube controller` runs with component.Run: its Events, then the
// Controller; /healthz on HealthBindAddress.
func Components(opts Options, log *slog.Logger) (component.Options, []component.Component, error) {
	// Two replicas share one node on a one-node cluster (host network): the health port
	// is shared, as the controller manager's is.
	run := component.Options{Address: opts.HealthBindAddress, Log: log, SharePort: true}
	cfg, err := component.RESTConfig(opts.Kubeconfig, "")
	if err != nil {
		return run, nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return run, nil, fmt.Errorf("creating the API client: %w", err)
	}
	id, err := component.PodName(opts.Identity)
	if err != nil {
		return run, nil, fmt.Errorf("no leader-election identity: pass --identity: %w", err)
	}
	events := &component.Events{Client: client, Source: corev1.EventSource{Component: Name}}
	c := New(client, events, id, opts.LeaseNamespace, log)
	c.restConfig = cfg
	return run, []component.Component{events, c}, nil
}

// Controller campaigns for the lease and, while it leads, runs the controllers. It is a
// component.Component and a component.Failer:
//
//	Init    builds the leader elector (the Lease LeaseNamespace/Name, held by identity)
//	Start   campaigns; once leading, runs the controllers
//	Stop    ends the controllers and releases the lease
//	Failed  delivers an error when the lease is lost: the process exits, the pod
//	        restarts and campaigns again, so no controller ever runs twice at once
type Controller struct {
	client        kubernetes.Interface
	restConfig    *rest.Config // for the operator; nil: it does not run
	events        *component.Events
	id, namespace string
	log           *slog.Logger
	life          component.Lifecycle
	elector       *leaderelection.LeaderElector
	ctx           context.Context // of Start: ended by Stop
	cancel        context.CancelFunc
	done          chan struct{} // closed when the elector has returned
	failed        chan error

	mu       sync.Mutex
	stopping bool
	leading  sync.WaitGroup // the controllers while leading
}

// New returns a controller in state created. events records its Events; it must be
// initialized before the controller (component.Run in that order).
func New(client kubernetes.Interface, events *component.Events, identity, leaseNamespace string, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{client: client, events: events, id: identity, namespace: leaseNamespace, log: log, failed: make(chan error, 1)}
	c.life.Name = Name
	return c
}

// Init implements component.Component.
func (c *Controller) Init(_ context.Context) error {
	return c.life.Init(func() error {
		if c.events.Recorder() == nil {
			return errors.New("initializing the controller: its Events are not initialized")
		}
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: c.namespace, Name: Name},
			Client:     c.client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: c.id, EventRecorder: c.events.Recorder()},
		}
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					c.mu.Lock()
					if c.stopping {
						c.mu.Unlock()
						return
					}
					c.leading.Add(1)
					c.mu.Unlock()
					defer c.leading.Done()
					c.log.Info("leading", "identity", c.id)
					if err := runControllers(ctx, c.client, c.restConfig, c.events.Recorder(), c.log); err != nil {
						c.log.Error("controllers stopped", "err", err)
						if c.ctx.Err() == nil {
							// Leading with no controllers would hold the lease for nothing:
							// exit, and a restart campaigns again.
							select {
							case c.failed <- fmt.Errorf("the controllers stopped: %w", err):
							default:
							}
						}
					}
				},
				OnStoppedLeading: func() {
					if c.ctx.Err() == nil {
						c.failed <- errors.New("lost the leader lease: exiting so that a restart campaigns again")
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("initializing the leader election: %w", err)
		}
		c.elector = elector
		return nil
	})
}

// Start implements component.Component.
func (c *Controller) Start(ctx context.Context) error {
	return c.life.Start(func() error {
		c.ctx, c.cancel = context.WithCancel(ctx)
		c.done = make(chan struct{})
		go func() {
			defer close(c.done)
			c.elector.Run(c.ctx)
		}()
		return nil
	})
}

// Stop implements component.Component.
func (c *Controller) Stop() error {
	return c.life.Stop(func(from component.State) error {
		if from == component.Running {
			c.mu.Lock()
			c.stopping = true
			c.mu.Unlock()
			c.cancel()
			<-c.done // the lease is released
			c.leading.Wait()
		}
		return nil
	})
}

// Failed implements component.Failer.
func (c *Controller) Failed() <-chan error { return c.failed }

// runControllers runs the approver and, given a REST configuration, the control-plane
// operator, until ctx ends or one of them fails.
func runControllers(ctx context.Context, client kubernetes.Interface, cfg *rest.Config, events record.EventRecorder, log *slog.Logger) error {
	csrs := informers.NewSharedInformerFactory(client, 10*time.Minute)
	nodes := informers.NewSharedInformerFactory(client, 10*time.Minute)
	apiNames := func(ctx context.Context) ([]string, error) {
		cluster, err := manifests.ReadClusterConfig(ctx, client)
		if err != nil {
			return nil, err
		}
		return pki.APINames(&cluster)
	}
	a, err := approver.New(client,
		csrs.Certificates().V1().CertificateSigningRequests(), nodes.Core().V1().Nodes(),
		apiNames, events, log.With("controller", "approver"))
	if err != nil {
		return err
	}
	runs := []func(context.Context) error{func(ctx context.Context) error { return a.Run(ctx, 1) }}
	factories := []interface {
		Start(<-chan struct{})
		Shutdown()
	}{csrs, nodes}
	if cfg != nil {
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("building a dynamic client: %w", err)
		}
		applier, err := apply.New(cfg)
		if err != nil {
			return err
		}
		controls := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
		// Only the control plane's workloads, ReplicaSets and pods (all labelled with
		// their component): other kube-system objects are none of the operator's business.
		kubeSystem := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
			informers.WithNamespace(metav1.NamespaceSystem),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = operator.ComponentPods().String() }))
		etcdPods := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
			informers.WithNamespace(metav1.NamespaceSystem),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = operator.EtcdPods().String() }))
		op, err := operator.New(cfg, client, dyn, applier,
			controls.ForResource(controlplane.GroupVersionResource).Informer(), kubeSystem,
			etcdPods.Core().V1().Pods(), nodes.Core().V1().Nodes(),
			events, log.With("controller", "operator"))
		if err != nil {
			return err
		}
		runs = append(runs, op.Run)
		factories = append(factories, controls, kubeSystem, etcdPods)
	}
	for _, f := range factories {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(runs))
	for _, run := range runs {
		go func() { errs <- run(ctx) }()
	}
	var first error
	for range runs {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel() // one stopped: stop the others; the error makes the process exit
		}
	}
	return first
}
