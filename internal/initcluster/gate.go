package initcluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/selfkube/selfkube/internal/checkpoint"
	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/handover"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/node"
)

// selfHosted reports whether p is a pod of the self-hosted control plane (owned by a
// DaemonSet or ReplicaSet), not a mirror pod of the temporary one.
func selfHosted(p *corev1.Pod, kind string) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == kind {
			return true
		}
	}
	return false
}

// observe looks at the cluster once for the hand-over gate.
func (d *Data) observe(ctx context.Context, probe handover.ServingProbe) (handover.Observed, error) {
	o := handover.Observed{At: time.Now(), Held: map[handover.Condition]bool{}}
	client, _, err := d.Client()
	if err != nil {
		return o, err
	}
	pods, err := client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: manifests.ComponentSelector("")})
	if err != nil {
		return o, err
	}
	var apiserverUID string
	for i := range pods.Items {
		p := &pods.Items[i]
		ready := node.PodReady(p)
		switch p.Labels[manifests.LabelName] {
		case manifests.APIServer:
			if selfHosted(p, "DaemonSet") && p.Spec.NodeName == d.Cfg.Node.Name && ready {
				o.Held[handover.APIServerPodReady] = true
				apiserverUID = string(p.UID)
			}
		case manifests.Scheduler:
			o.Held[handover.SchedulerReady] = o.Held[handover.SchedulerReady] || selfHosted(p, "ReplicaSet") && ready
		case manifests.ControllerManager:
			o.Held[handover.ControllerManagerReady] = o.Held[handover.ControllerManagerReady] || selfHosted(p, "ReplicaSet") && ready
		}
	}
	n, err := client.CoreV1().Nodes().Get(ctx, d.Cfg.Node.Name, metav1.GetOptions{})
	if err != nil {
		return o, err
	}
	o.Held[handover.NodeReady] = node.Ready(n)
	store := checkpoint.Store{Dir: d.Layout.CheckpointsDir(), ManifestsDir: d.Layout.ManifestsDir()}
	o.Held[handover.CheckpointPresent] = store.Present(checkpoint.CheckpointAPIServer)
	if apiserverUID != "" {
		serves, err := probe.ReadyzServedBy(ctx, apiserverUID)
		if err != nil {
			d.Log.Debug("probing the self-hosted apiserver", "err", err)
		}
		o.Held[handover.APIServerServes] = serves
	}
	return o, nil
}

func handoverGate(ctx context.Context, d *Data) error {
	tlsCfg, err := d.servingTLS()
	if err != nil {
		return err
	}
	probe := handover.ServingProbe{Addr: fmt.Sprintf("127.0.0.1:%d", config.DefaultAPIServerPort), TLS: tlsCfg, Proc: "/proc", Attempts: 16}
	required := handover.Conditions
	start := time.Now()
	gate := handover.New(required, start.Add(d.HandoverTimeout))
	lastMissing := ""
	for {
		o, err := d.observe(ctx, probe)
		if err != nil {
			d.Log.Debug("observing the control plane", "err", err)
			o.At = time.Now() // an observation that failed holds nothing, but time still passes
		}
		gate = handover.Next(gate, o)
		if m := fmt.Sprint(gate.Missing); m != lastMissing && gate.Phase == handover.Waiting {
			names := make([]string, 0, len(gate.Missing))
			for _, c := range gate.Missing {
				names = append(names, string(c))
			}
			d.Status.Infof("%s: waiting for: %s", time.Since(start).Round(100*time.Millisecond), strings.Join(names, "; "))
			lastMissing = m
		}
		switch gate.Phase {
		case handover.Open:
			return nil
		case handover.TimedOut:
			return gate.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
