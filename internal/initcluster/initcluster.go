// Package initcluster is `selfkube init`: it turns a host that has a kubelet, a container
// runtime and the selfkube binary into the first control-plane node of a self-hosted
// cluster.
//
// It starts etcd and a temporary control plane as static pods, applies the self-hosted
// control plane (DaemonSets, Deployments, Secrets) through that temporary API, waits at
// the hand-over gate until the self-hosted components serve, and only then removes the
// temporary static pods it owns. Every phase converges, so a failed run resumes where it
// stopped and a finished node is left alone.
package initcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/apply"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/fence"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/kubeconfig"
	"github.com/selfkube/selfkube/internal/render"
	"github.com/selfkube/selfkube/internal/status"
	"github.com/selfkube/selfkube/internal/workflow"
)

// Options are the knobs of one init run.
type Options struct {
	Layout host.Layout
	// HandoverTimeout bounds the wait at the hand-over gate.
	HandoverTimeout time.Duration
	// APITimeout bounds the waits for the kubelet, the API and the node.
	APITimeout time.Duration
	// IgnorePreflightErrors names checks whose failure is only a warning ("all" for every one).
	IgnorePreflightErrors []string
	// TokenTTL is the lifetime of the bootstrap token printed in the join command.
	TokenTTL time.Duration
	Status   *status.Printer
	Log      *slog.Logger
}

// Data is what the phases share.
type Data struct {
	Options
	Cfg *config.Config
	// Record is init's record on this node (host.Record "init"): the static pods it
	// wrote, its phases, the hand-over, and whether it finished.
	Record *host.Record

	restConfig *rest.Config
	client     kubernetes.Interface
	// applierFor builds a phase's applier from the client's configuration; nil is
	// apply.New (tests pass one over fakes).
	applierFor func(*rest.Config) (*apply.Applier, error)
	// clearFence removes the fence of a killed earlier run; nil: none to clear (tests).
	clearFence func() error
	pass       *render.Pass
	joinCmd    string
}

// AssetDir is where init renders the cluster's assets on this node.
func (d *Data) AssetDir() string { return d.Layout.AssetDir() }

// LoadRecord reads init's record of an earlier run on this node; a missing file is a
// fresh node.
func LoadRecord(layout host.Layout) (*host.Record, error) { return host.LoadRecord(layout, "init") }

func (d *Data) own(path string) error { return d.Record.Own(path) }

// Client returns a client for the local API server with the break-glass credentials:
// init runs before the RBAC that admin.conf relies on exists. It talks to this node's
// advertise address (where the temporary apiserver listens, and the self-hosted one after
// it), not the control-plane endpoint, which may be a load balancer not yet in service.
func (d *Data) Client() (kubernetes.Interface, *rest.Config, error) {
	if d.client != nil {
		return d.client, d.restConfig, nil
	}
	path := filepath.Join(d.AssetDir(), kubeconfig.Dir, kubeconfig.SuperAdmin)
	server := "https://" + net.JoinHostPort(d.Cfg.Node.AdvertiseAddress, strconv.Itoa(config.DefaultAPIServerPort))
	cfg, err := clientcmd.BuildConfigFromFlags(server, path)
	if err != nil {
		return nil, nil, fmt.Errorf("loading %s: %w", path, err)
	}
	cfg.Timeout = 15 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	d.client, d.restConfig = client, cfg
	return client, cfg, nil
}

func localEtcd(d *Data) bool { return d.Cfg.Cluster.Etcd.Local != nil }
func notHanded(d *Data) bool { return !d.Record.HandedOver() }

// Workflow lists init's phases in order.
func Workflow() *workflow.Workflow[*Data] {
	return &workflow.Workflow[*Data]{Phases: []workflow.Phase[*Data]{
		{Name: "preflight", Short: "preflight checks", Run: preflight},
		{Name: "certs", Short: "certificates", Run: certs},
		{Name: "kubeconfigs", Short: "kubeconfigs", Run: kubeconfigs},
		{Name: "kubelet", Short: "kubelet configuration and start", Run: kubeletStart},
		{Name: "etcd", Short: "etcd static pod", Run: etcdStaticPod, RunIf: localEtcd},
		{Name: "control-plane", Short: "temporary control plane (static pods)", Run: temporaryControlPlane, RunIf: notHanded},
		{Name: "wait-api", Short: "waiting for the API", Run: waitAPI},
		{Name: "mark-control-plane", Short: "labelling and tainting the node", Run: markControlPlane},
		{Name: "apply", Short: "applying the self-hosted control plane and pod network", Run: applySelfHosted},
		{Name: "handover", Short: "hand-over gate", Run: handoverGate, RunIf: notHanded},
		{Name: "teardown", Short: "removing the temporary control plane", Run: teardown, RunIf: notHanded},
		{Name: "post-handover", Short: "checking the self-hosted control plane", Run: postHandover},
		{Name: "addons", Short: "applying kube-proxy, then CoreDNS once kube-proxy is Ready", Run: applyAddons},
		{Name: "bootstrap-token", Short: "bootstrap token for the join command", Run: bootstrapToken},
		{Name: "kubeadm-compat", Short: "kubeadm-config and kubelet-config, for stock kubeadm join", Run: kubeadmCompat},
	}}
}

// ErrAlreadyInitialized says init found a finished node and changed nothing.
var ErrAlreadyInitialized = errors.New("this node is already initialized")

// runAction is what one init run does on this node.
type runAction int

const (
	// runWorkflow runs the selected phases in order, reusing what an earlier run left,
	// and records that init finished (Record.Completed) once every one of them succeeded.
	runWorkflow runAction = iota
	// runPhase runs the one phase of `init phase NAME` and leaves Record.Completed as it
	// is: one phase says nothing about the others.
	runPhase
	// refuse changes nothing: init finished on this node before (ErrAlreadyInitialized).
	refuse
)

func (a runAction) String() string {
	switch a {
	case runWorkflow:
		return "run the workflow"
	case runPhase:
		return "run one phase"
	case refuse:
		return "refuse"
	}
	return fmt.Sprintf("runAction(%d)", int(a))
}

// nextRun decides what an init run does, from the state earlier runs left and the phase
// selection. It does no I/O.
//
//	selection               not Completed        Completed
//	whole workflow          runWorkflow          refuse
//	--skip-phases A,B       runWorkflow          refuse
//	init phase NAME         runPhase             runPhase
//
// Owned and HandOver never change the answer: a run that stopped part way (before or
// after the hand-over) is resumed by running the workflow again, whose phases converge
// and skip the temporary control plane's steps once it was handed over.
//
// A workflow run with --skip-phases that succeeds marks the node Completed too: leaving
// a phase out is the operator's choice, not a failure, and a skipped phase can still be
// run later with `init phase NAME`, which works on a finished node.
func nextRun(r host.Record, sel workflow.Options) runAction {
	switch {
	case sel.Only != "":
		return runPhase
	case r.IsCompleted():
		return refuse
	default:
		return runWorkflow
	}
}

// Run runs init's workflow (or the selected phases) on this node. On a node where init
// finished before it changes nothing and returns ErrAlreadyInitialized. The node counts
// as initialized only once a run of the workflow got through every phase it ran: after a
// failure, running init again resumes (see nextRun).
func Run(ctx context.Context, cfg *config.Config, opts Options, sel workflow.Options) (*Data, error) {
	rec, err := LoadRecord(opts.Layout)
	if err != nil {
		return nil, err
	}
	d := &Data{Options: opts, Cfg: cfg, Record: rec,
		clearFence: fence.NFTables{ProcNet: "/proc/thread-self/net", Table: fence.InitTable}.Clear}
	sel.Status = opts.Status
	return d, d.run(ctx, Workflow(), sel)
}

// run runs w on d as nextRun decides and records the end of a workflow run in which
// every phase succeeded.
func (d *Data) run(ctx context.Context, w *workflow.Workflow[*Data], sel workflow.Options) error {
	action := nextRun(*d.Record, sel)
	if action == refuse {
		return fmt.Errorf("%w (finished %s): nothing was changed; `selfkube token create --print-join-command` "+
			"makes a new join command, `selfkube init phase NAME` runs one phase again, `selfkube reset` starts over",
			ErrAlreadyInitialized, d.Record.Completed.Format(time.RFC3339))
	}
	sel.Finished = d.Record.Finished
	if err := w.Run(ctx, d, sel); err != nil {
		return err
	}
	if action != runWorkflow {
		return nil
	}
	d.Record.Completed = time.Now()
	if err := d.Record.Save(); err != nil {
		return fmt.Errorf("every phase succeeded, but recording that init finished failed: %w; "+
			"run init again to record it (its phases reuse what exists)", err)
	}
	return nil
}
