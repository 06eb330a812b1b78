package component

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Events is the Component that writes an agent's Kubernetes Events: Init creates the
// broadcaster and the Recorder, Start sends what is recorded to the API (retrying, so the
// Events of an outage arrive once the API is back), Stop shuts the broadcaster down. Put
// it before the components that record, so that it starts before and stops after them.
type Events struct {
	// Client writes the Events.
	Client kubernetes.Interface
	// Namespace the Events are written in; empty: the namespace of each Event.
	Namespace string
	// Source is the Events' source (component, host).
	Source corev1.EventSource

	life        Lifecycle
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// Recorder records Events; nil before Init.
func (e *Events) Recorder() record.EventRecorder { return e.recorder }

// Init implements Component.
func (e *Events) Init(ctx context.Context) error {
	return e.life.Init(func() error {
		if e.Client == nil {
			return errors.New("events: no Kubernetes client")
		}
		e.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
		e.recorder = e.broadcaster.NewRecorder(scheme.Scheme, e.Source)
		return nil
	})
}

// Start implements Component.
func (e *Events) Start(_ context.Context) error {
	return e.life.Start(func() error {
		e.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.Client.CoreV1().Events(e.Namespace)})
		return nil
	})
}

// Stop implements Component.
func (e *Events) Stop() error {
	return e.life.Stop(func(State) error {
		if e.broadcaster != nil {
			e.broadcaster.Shutdown()
		}
		return nil
	})
}

// EventSink records what an agent did, for `kubectl get events` (on the agent's pod). The
// type is corev1.EventTypeNormal or corev1.EventTypeWarning.
type EventSink interface {
	Event(eventType, reason, message string)
}
