package component

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/selfkube/selfkube/internal/kubeconfig"
)

// RESTConfig is the client configuration of an agent: the pod's service account when
// path is empty, else the kubeconfig file at path (kubeconfig.RESTConfig). A non-empty
// userAgent names the agent in the apiserver's logs and audit.
func RESTConfig(path, userAgent string) (*rest.Config, error) {
	cfg, err := kubeconfig.RESTConfig(path)
	if err != nil {
		return nil, err
	}
	if userAgent != "" {
		cfg.UserAgent = userAgent
	}
	return cfg, nil
}

// Client is the API client of an agent, for RESTConfig(path, userAgent). It sets no
// timeout: each request is bounded by the context it is made with.
func Client(path, userAgent string) (kubernetes.Interface, error) {
	cfg, err := RESTConfig(path, userAgent)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the API client: %w", err)
	}
	return client, nil
}

// NodeName is the name of the Node an agent runs on: flag (--node-name) if set, else
// $NODE_NAME, which the agents' pods set from the downward API's spec.nodeName. There is
// deliberately no fallback to the hostname: a kubelet may register under another name
// (--hostname-override, a cloud's node name), and an agent that guessed would act for a
// Node that is not its own.
func NodeName(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if name := os.Getenv("NODE_NAME"); name != "" {
		return name, nil
	}
	return "", errors.New("the node name is unknown: pass --node-name or set NODE_NAME from the downward API (spec.nodeName)")
}

// PodName is the name of the agent's own pod: flag if set, else $POD_NAME (the downward
// API's metadata.name), else the hostname, which is the pod's name unless the pod is on
// the host network.
func PodName(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if name := os.Getenv("POD_NAME"); name != "" {
		return name, nil
	}
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("the pod name is unknown: set POD_NAME from the downward API (metadata.name): %w", err)
	}
	return name, nil
}
