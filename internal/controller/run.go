// Package controller is `selfkube controller`: the in-cluster controllers of selfkube, run
// by the selfkube-controller Deployment on control-plane nodes. Its replicas elect a leader
// (a Lease in kube-system); only the leader runs the controllers. Today it runs one: the
// approver of bootstrap kubelet certificates (internal/approver).
//
// Lifecycle:
//
//	start ─▶ campaigning ─(lease won)─▶ leading: informers + controllers
//	              ▲                          │
//	              └──── exit, restarted ◀────┘ lease lost (never lead twice)
package controller

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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/selfkube/selfkube/internal/approver"
	"github.com/selfkube/selfkube/internal/kubeconfig"
)

// Name of the Deployment, its ServiceAccount, its Lease and its Events' source.
const Name = "selfkube-controller"

// Options are the settings of `selfkube controller`.
type Options struct {
	Kubeconfig        string // empty: in-cluster
	Identity          string // leader-election identity; default $POD_NAME, then the hostname
	HealthBindAddress string
	LeaseNamespace    string
}

// DefaultHealthPort is the port of /healthz, on loopback.
const DefaultHealthPort = 10268

// DefaultOptions are the Deployment's settings.
func DefaultOptions() Options {
	return Options{HealthBindAddress: fmt.Sprintf("127.0.0.1:%d", DefaultHealthPort), LeaseNamespace: metav1.NamespaceSystem}
}

// Run campaigns for the lease and, while it leads, runs the controllers. It returns when
// ctx is done, or with an error when leadership is lost (the pod restarts and campaigns
// again: no controller ever runs twice at once).
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	cfg, err := kubeconfig.RESTConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	id := opts.Identity
	if id == "" {
		id = os.Getenv("POD_NAME")
	}
	if id == "" {
		if id, err = os.Hostname(); err != nil {
			return fmt.Errorf("no leader-election identity: pass --identity: %w", err)
		}
	}

	ln, err := net.Listen("tcp", opts.HealthBindAddress)
	if err != nil {
		return fmt.Errorf("serving /healthz on %s: %w", opts.HealthBindAddress, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	events := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Name})

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaseNamespace, Name: Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id, EventRecorder: events},
	}
	var lost error
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Name:            Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("leading", "identity", id)
				if err := runControllers(ctx, client, events, log); err != nil {
					log.Error("controllers stopped", "err", err)
				}
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					lost = errors.New("lost the leader lease: exiting so that a restart campaigns again")
				}
			},
		},
	})
	return lost
}

func runControllers(ctx context.Context, client kubernetes.Interface, events record.EventRecorder, log *slog.Logger) error {
	csrs := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = approver.CSRFieldSelector }))
	nodes := informers.NewSharedInformerFactory(client, 10*time.Minute)
	a, err := approver.New(client,
		csrs.Certificates().V1().CertificateSigningRequests(), nodes.Core().V1().Nodes(),
		events, log.With("controller", "approver"))
	if err != nil {
		return err
	}
	csrs.Start(ctx.Done())
	nodes.Start(ctx.Done())
	defer csrs.Shutdown()
	defer nodes.Shutdown()
	return a.Run(ctx, 1)
}
