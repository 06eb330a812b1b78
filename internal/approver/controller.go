package approver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	certinformers "k8s.io/client-go/informers/certificates/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// LedgerName is the ConfigMap in kube-system in which the approver records every node name
// it gave a bootstrap token a certificate for (key: node name, value: CSR name). A name is
// given once: Kubernetes cannot revoke a certificate, so a second holder of the same
// identity could never be told apart from the first.
const LedgerName = "selfkube-node-identities"

// LedgerNamespace is the ledger's namespace.
const LedgerNamespace = metav1.NamespaceSystem

// Controller approves or denies bootstrap CSRs as Decide says and kubelet-serving CSRs as
// DecideServing says, records each decision as a condition of the CSR and as an Event on
// it, and each bootstrap approval in the ledger.
type Controller struct {
	client kubernetes.Interface
	// apiNames are the names and addresses the API is served under (pki.APINames of the
	// published cluster configuration).
	apiNames func(context.Context) ([]string, error)
	csrs     certlisters.CertificateSigningRequestLister
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	events   record.EventRecorder
	log      *slog.Logger
}

// New wires a Controller to a CSR informer and a Node informer, which the caller starts;
// apiNames says the names the API is served under.
func New(client kubernetes.Interface, csrInformer certinformers.CertificateSigningRequestInformer, nodeInformer coreinformers.NodeInformer,
	apiNames func(context.Context) ([]string, error), events record.EventRecorder, log *slog.Logger) (*Controller, error) {
	c := &Controller{
		client:   client,
		apiNames: apiNames,
		csrs:     csrInformer.Lister(),
		nodes:    nodeInformer.Lister(),
		synced:   []cache.InformerSynced{csrInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet-csr"}),
		events: events,
		log:    log,
	}
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := csrInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, err
	}
	// A deleted Node frees its name in the ledger: deleting a Node is how an
	// administrator retires a machine's identity (kubectl delete node).
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.queue.Add(deletedNodePrefix + key)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// deletedNodePrefix marks a queue key as a deleted Node's name (CSR names hold no colon).
const deletedNodePrefix = "deleted-node:"

// Run processes CSRs with workers goroutines until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("the CSR and Node caches did not sync: %w", ctx.Err())
	}
	c.log.Info("kubelet CSR approver running")
	for range workers {
		go wait.UntilWithContext(ctx, c.work, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		after, err := c.sync(ctx, key)
		switch {
		case err == nil && after > 0:
			c.queue.Forget(key)
			c.queue.AddAfter(key, after)
		case err == nil:
			c.queue.Forget(key)
		default:
			c.log.Warn("deciding a CSR failed; retrying", "csr", key, "err", err)
			c.queue.AddRateLimited(key)
		}
		c.queue.Done(key)
	}
}

// waitAgain is how soon a CSR DecideServing waits on is looked at again.
const waitAgain = 5 * time.Second

// sync decides the CSR (or forgets the deleted node) key; a positive duration asks to be
// called again after it.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	if node, ok := strings.CutPrefix(key, deletedNodePrefix); ok {
		return 0, c.forget(ctx, node)
	}
	csr, err := c.csrs.Get(key)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName {
		return c.syncServing(ctx, csr)
	}
	return 0, c.syncBootstrap(ctx, csr)
}

// syncServing decides a kubelet-serving CSR.
func (c *Controller) syncServing(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (time.Duration, error) {
	if decided(csr) {
		return 0, nil
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	names, err := c.apiNames(ctx)
	if err != nil {
		return 0, fmt.Errorf("finding the names the API is served under: %w", err)
	}
	d := DecideServing(csr, ServingView{Nodes: nodes, APINames: names, Now: time.Now()})
	switch d.Action {
	case Wait:
		c.log.Info("kubelet serving CSR waits", "csr", csr.Name, "node", d.NodeName, "for", d.Message)
		return waitAgain, nil
	case Approve:
		if err := c.setCondition(ctx, csr, certificatesv1.CertificateApproved, d); err != nil {
			return 0, err
		}
		c.events.Event(csr, corev1.EventTypeNormal, d.Reason, d.Message)
		c.log.Info("approved a kubelet serving certificate", "csr", csr.Name, "node", d.NodeName)
	case Deny:
		if err := c.setCondition(ctx, csr, certificatesv1.CertificateDenied, d); err != nil {
			return 0, err
		}
		c.events.Event(csr, corev1.EventTypeWarning, d.Reason, d.Message)
		c.log.Warn("denied a kubelet serving CSR", "csr", csr.Name, "node", d.NodeName, "requester", csr.Spec.Username, "reason", d.Reason)
	}
	return 0, nil
}

// syncBootstrap decides a bootstrap CSR.
func (c *Controller) syncBootstrap(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	if Decide(csr, Known{Node: func(string) bool { return false }, Issued: func(string) (string, bool) { return "", false }}).Action == Skip {
		return nil // not ours or decided: no reads
	}
	ledger, err := c.client.CoreV1().ConfigMaps(LedgerNamespace).Get(ctx, LedgerName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the ledger %s/%s: %w", LedgerNamespace, LedgerName, err)
	}
	d := Decide(csr, Known{
		Node: func(name string) bool {
			_, err := c.nodes.Get(name)
			return err == nil
		},
		Issued: func(name string) (string, bool) {
			v, ok := ledger.Data[name]
			return v, ok
		},
	})
	switch d.Action {
	case Approve:
		if err := c.record(ctx, d.NodeName, csr.Name); err != nil {
			return err
		}
		if err := c.setCondition(ctx, csr, certificatesv1.CertificateApproved, d); err != nil {
			return err
		}
		c.events.Event(csr, corev1.EventTypeNormal, d.Reason, d.Message)
		c.log.Info("approved a new node's client certificate", "csr", csr.Name, "node", d.NodeName, "requester", csr.Spec.Username)
	case Deny:
		if err := c.setCondition(ctx, csr, certificatesv1.CertificateDenied, d); err != nil {
			return err
		}
		c.events.Event(csr, corev1.EventTypeWarning, d.Reason, d.Message)
		c.log.Warn("denied a bootstrap CSR", "csr", csr.Name, "node", d.NodeName, "requester", csr.Spec.Username, "reason", d.Reason)
	}
	return nil
}

// record writes name → csr into the ledger before the approval, so that a name is never
// approved twice, also when the approval is retried or two approvers race (the update is
// conditional on the ledger's resourceVersion).
func (c *Controller) record(ctx context.Context, name, csr string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := c.client.CoreV1().ConfigMaps(LedgerNamespace).Get(ctx, LedgerName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if prior, ok := cm.Data[name]; ok {
			if prior == csr {
				return nil
			}
			return fmt.Errorf("node name %s was just given to CSR %s", name, prior)
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[name] = csr
		_, err = c.client.CoreV1().ConfigMaps(LedgerNamespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
}

// forget removes name from the ledger unless a Node of that name exists again.
func (c *Controller) forget(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if _, err := c.nodes.Get(name); err == nil {
			return nil
		}
		cm, err := c.client.CoreV1().ConfigMaps(LedgerNamespace).Get(ctx, LedgerName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := cm.Data[name]; !ok {
			return nil
		}
		delete(cm.Data, name)
		if _, err := c.client.CoreV1().ConfigMaps(LedgerNamespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
			return err
		}
		c.log.Info("node deleted: its name may be given to a bootstrap token again", "node", name)
		return nil
	})
}

// FieldManager of the approver's writes.
const FieldManager = "selfkube-approver"

func (c *Controller) setCondition(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType, d Decision) error {
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: t, Status: corev1.ConditionTrue, Reason: d.Reason, Message: d.Message, LastUpdateTime: metav1.Now(),
	})
	_, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: FieldManager})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // changed meanwhile: the informer brings it back, or it is gone
	}
	return err
}
