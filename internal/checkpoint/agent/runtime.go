package agent

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/manifests"
)

// Local is what the container runtime runs on this node.
type Local struct {
	// Running: checkpoint names whose parent has a running container here. Only pods of
	// kube-system (manifests.Namespace) annotated with a valid name count; the
	// checkpoint's own static pod does not.
	Running map[string]bool
	// Containers: the IDs of every running container.
	Containers map[string]bool
}

// Runtime observes the container runtime.
type Runtime interface {
	Observe(ctx context.Context) (Local, error)
}

// CRI is a Runtime over the CRI socket of containerd (or any CRI runtime). The kubelet
// copies a pod's annotations to its sandbox, so the sandbox names the checkpoint. Any
// pod may carry any annotation, so a sandbox outside kube-system never counts: a user's
// pod annotated as the apiserver would otherwise keep its checkpoint from starting.
type CRI struct {
	conn   *grpc.ClientConn
	client runtimeapi.RuntimeServiceClient
}

// DialCRI connects to a CRI endpoint such as unix:///run/containerd/containerd.sock.
// Connecting is lazy: an absent runtime shows in Observe.
func DialCRI(endpoint string) (*CRI, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		endpoint = "unix://" + endpoint
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to the container runtime at %s: %w", endpoint, err)
	}
	return &CRI{conn: conn, client: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *CRI) Close() error { return c.conn.Close() }

// Observe lists the ready sandboxes and running containers.
func (c *CRI) Observe(ctx context.Context) (Local, error) {
	sandboxes, err := c.client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		return Local{}, fmt.Errorf("listing pod sandboxes: %w", err)
	}
	containers, err := c.client.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}},
	})
	if err != nil {
		return Local{}, fmt.Errorf("listing containers: %w", err)
	}
	return local(sandboxes.Items, containers.Containers, manifests.Namespace), nil
}

// local is what runs here: every running container, and the checkpoints whose parents
// run in a sandbox of namespace.
func local(sandboxes []*runtimeapi.PodSandbox, containers []*runtimeapi.Container, namespace string) Local {
	l := Local{Running: map[string]bool{}, Containers: map[string]bool{}}
	parentOf := map[string]string{} // sandbox ID → checkpoint name
	for _, s := range sandboxes {
		if s.GetMetadata().GetNamespace() != namespace || s.Annotations[checkpoint.AnnotationCheckpointOf] != "" {
			continue
		}
		if name := s.Annotations[checkpoint.AnnotationCheckpoint]; checkpoint.ValidName(name) == nil {
			parentOf[s.Id] = name
		}
	}
	for _, c := range containers {
		l.Containers[c.Id] = true
		if name, ok := parentOf[c.PodSandboxId]; ok {
			l.Running[name] = true
		}
	}
	return l
}
