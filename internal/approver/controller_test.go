package approver

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

// cluster is a fake API server with the approver running against it.
type cluster struct {
	client *fake.Clientset
	events *record.FakeRecorder
}

// newCluster holds the ledger, a Node node1 and objs; prepare may add reactors before the
// controller starts.
func newCluster(t *testing.T, prepare func(*fake.Clientset), objs ...runtime.Object) *cluster {
	t.Helper()
	objs = append(objs,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "selfkube-node-identities"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}},
	)
	client := fake.NewClientset(objs...)
	if prepare != nil {
		prepare(client)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	events := record.NewFakeRecorder(100)
	c, err := New(client, factory.Certificates().V1().CertificateSigningRequests(), factory.Core().V1().Nodes(),
		func(context.Context) ([]string, error) { return testAPINames, nil }, events, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Run(ctx, 1); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		factory.Shutdown()
	})
	return &cluster{client: client, events: events}
}

func (c *cluster) createCSR(t *testing.T, csr *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().Create(context.Background(), csr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitDecided waits until the CSR has a condition and returns it.
func (c *cluster) waitDecided(t *testing.T, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	var csr *certificatesv1.CertificateSigningRequest
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		csr, err = c.client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		return err == nil && len(csr.Status.Conditions) > 0, err
	})
	if err != nil {
		t.Fatalf("waiting for CSR %s to be decided: %v", name, err)
	}
	return csr
}

func (c *cluster) ledger(t *testing.T) map[string]string {
	t.Helper()
	cm, err := c.client.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "selfkube-node-identities", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// nextEvent returns the next recorded event, as "Type Reason Message".
func (c *cluster) nextEvent(t *testing.T) string {
	t.Helper()
	select {
	case e := <-c.events.Events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event recorded")
		return ""
	}
}

// noMoreEvents fails if an event arrives within a short while.
func (c *cluster) noMoreEvents(t *testing.T) {
	t.Helper()
	select {
	case e := <-c.events.Events:
		t.Errorf("unexpected event %q", e)
	case <-time.After(200 * time.Millisecond):
	}
}

func assertCondition(t *testing.T, csr *certificatesv1.CertificateSigningRequest, wantType certificatesv1.RequestConditionType, wantReason string) {
	t.Helper()
	if len(csr.Status.Conditions) != 1 {
		t.Fatalf("CSR %s has conditions %+v, want exactly one %s", csr.Name, csr.Status.Conditions, wantType)
	}
	got := csr.Status.Conditions[0]
	if got.Type != wantType || got.Status != corev1.ConditionTrue || got.Reason != wantReason {
		t.Errorf("CSR %s condition = {%s %s %s}, want {%s True %s}", csr.Name, got.Type, got.Status, got.Reason, wantType, wantReason)
	}
}

func TestController(t *testing.T) {
	userCSR := bootstrapCSR("csr-user-node2", nodeRequest(t, "node2"))
	userCSR.Spec.Username, userCSR.Spec.Groups = "alice", []string{"developers", "system:authenticated"}
	c := newCluster(t, nil,
		bootstrapCSR("csr-node1", nodeRequest(t, "node1")),
		bootstrapCSR("csr-new-node", nodeRequest(t, "new-node")),
		userCSR,
	)

	for _, tt := range []struct {
		csr        string
		wantType   certificatesv1.RequestConditionType
		wantReason string
	}{
		{csr: "csr-node1", wantType: "Denied", wantReason: "NodeNameTaken"},
		{csr: "csr-new-node", wantType: "Approved", wantReason: "SelfkubeNewNode"},
	} {
		t.Run(tt.csr, func(t *testing.T) {
			assertCondition(t, c.waitDecided(t, tt.csr), tt.wantType, tt.wantReason)
		})
	}
	if got, want := c.ledger(t), map[string]string{"new-node": "csr-new-node"}; !maps.Equal(got, want) {
		t.Errorf("ledger = %v, want %v", got, want)
	}
	// The two events, in whichever order the CSRs were decided.
	var gotWarning, gotNormal bool
	for range 2 {
		switch e := c.nextEvent(t); {
		case strings.HasPrefix(e, "Warning NodeNameTaken denied by selfkube: node node1 exists"):
			gotWarning = true
		case strings.HasPrefix(e, "Normal SelfkubeNewNode approved by selfkube: client certificate of the new node new-node"):
			gotNormal = true
		default:
			t.Errorf("unexpected event %q", e)
		}
	}
	if !gotWarning || !gotNormal {
		t.Errorf("got Warning NodeNameTaken %v, Normal SelfkubeNewNode %v; want both", gotWarning, gotNormal)
	}

	t.Run("second bootstrap CSR for an issued name", func(t *testing.T) {
		c.createCSR(t, bootstrapCSR("csr-new-node-again", nodeRequest(t, "new-node")))
		assertCondition(t, c.waitDecided(t, "csr-new-node-again"), "Denied", "NodeNameAlreadyIssued")
		if e := c.nextEvent(t); !strings.HasPrefix(e, "Warning NodeNameAlreadyIssued ") || !strings.Contains(e, "CSR csr-new-node") {
			t.Errorf("event %q, want a Warning NodeNameAlreadyIssued naming csr-new-node", e)
		}
		if got, want := c.ledger(t), map[string]string{"new-node": "csr-new-node"}; !maps.Equal(got, want) {
			t.Errorf("ledger = %v, want %v", got, want)
		}
	})

	// By now the controller has long processed the user's CSR, which it must not touch.
	t.Run("non-bootstrap CSR is left alone", func(t *testing.T) {
		csr, err := c.client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), "csr-user-node2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(csr.Status.Conditions) != 0 {
			t.Errorf("conditions %+v, want none", csr.Status.Conditions)
		}
		for _, a := range c.client.Actions() {
			if u, ok := a.(k8stesting.UpdateAction); ok && a.GetResource().Resource == "certificatesigningrequests" {
				if obj, ok := u.GetObject().(*certificatesv1.CertificateSigningRequest); ok && obj.Name == "csr-user-node2" {
					t.Errorf("controller wrote the user's CSR: %v", a)
				}
			}
		}
		c.noMoreEvents(t)
	})
}

func TestControllerRetriesFailedApproval(t *testing.T) {
	var calls, failures atomic.Int32
	c := newCluster(t, func(client *fake.Clientset) {
		client.PrependReactor("update", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "approval" {
				return false, nil, nil
			}
			if calls.Add(1) == 1 {
				failures.Add(1)
				return true, nil, apierrors.NewServiceUnavailable("injected failure")
			}
			return false, nil, nil // on to the object tracker
		})
	}, bootstrapCSR("csr-new-node", nodeRequest(t, "new-node")))

	csr := c.waitDecided(t, "csr-new-node")
	assertCondition(t, csr, "Approved", "SelfkubeNewNode")
	if e := c.nextEvent(t); !strings.HasPrefix(e, "Normal SelfkubeNewNode ") {
		t.Errorf("event %q, want Normal SelfkubeNewNode", e)
	}
	c.noMoreEvents(t) // also gives a wrongful second approval time to happen
	if got, want := failures.Load(), int32(1); got != want {
		t.Errorf("the reactor failed %d approvals, want %d: did it match UpdateApproval?", got, want)
	}
	if got, want := calls.Load(), int32(2); got != want {
		t.Errorf("%d approval updates, want %d (one failed, one retried)", got, want)
	}
	if got, want := c.ledger(t), map[string]string{"new-node": "csr-new-node"}; !maps.Equal(got, want) {
		t.Errorf("ledger = %v, want %v", got, want)
	}
	csr, err := c.client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), "csr-new-node", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertCondition(t, csr, "Approved", "SelfkubeNewNode")
}

// Deleting a Node frees its name: the next bootstrap CSR for it is approved (a machine
// replaced under the same name), while names of Nodes that still exist stay denied.
func TestControllerDeletedNodeFreesItsName(t *testing.T) {
	c := newCluster(t, nil, bootstrapCSR("csr-w1", nodeRequest(t, "w1")))
	assertCondition(t, c.waitDecided(t, "csr-w1"), "Approved", "SelfkubeNewNode")
	ctx := context.Background()
	if _, err := c.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Denied either way: the Node exists, and the ledger has the name (whichever the
	// controller sees first, its Node cache may lag the create).
	c.createCSR(t, bootstrapCSR("csr-w1-while-registered", nodeRequest(t, "w1")))
	if got := c.waitDecided(t, "csr-w1-while-registered").Status.Conditions[0]; got.Type != "Denied" ||
		(got.Reason != "NodeNameTaken" && got.Reason != "NodeNameAlreadyIssued") {
		t.Errorf("CSR for the registered w1: %s %s, want Denied", got.Type, got.Reason)
	}

	if err := c.client.CoreV1().Nodes().Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		_, issued := c.ledger(t)["w1"]
		return !issued, nil
	})
	if err != nil {
		t.Fatalf("w1 is still in the ledger after its Node was deleted: %v", c.ledger(t))
	}
	c.createCSR(t, bootstrapCSR("csr-w1-replacement", nodeRequest(t, "w1")))
	assertCondition(t, c.waitDecided(t, "csr-w1-replacement"), "Approved", "SelfkubeNewNode")
	if got, want := c.ledger(t), map[string]string{"w1": "csr-w1-replacement"}; !maps.Equal(got, want) {
		t.Errorf("ledger = %v, want %v", got, want)
	}
}
