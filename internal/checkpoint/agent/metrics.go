package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/selfkube/selfkube/internal/checkpoint"
)

// Metrics are the checkpointer's counters, served in the Prometheus text format.
type Metrics struct {
	mu        sync.Mutex
	actions   map[[2]string]int // (checkpoint, action) → count
	writes    map[string]int
	active    map[string]bool
	reachable bool
	lastSync  time.Time
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{actions: map[[2]string]int{}, writes: map[string]int{}, active: map[string]bool{}}
}

func (m *Metrics) count(name string, a checkpoint.Action) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.actions[[2]string{name, string(a)}]++
}

func (m *Metrics) countWrite(name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes[name]++
}

func (m *Metrics) setActive(name string, active bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active[name] = active
}

func (m *Metrics) setReachable(ok bool, at time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reachable, m.lastSync = ok, at
}

// WriteTo writes the metrics in the Prometheus text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b []byte
	p := func(format string, args ...any) { b = fmt.Appendf(b, format, args...) }
	p("# HELP selfkube_checkpointer_actions_total Checkpoint activations, retirements and removals.\n")
	p("# TYPE selfkube_checkpointer_actions_total counter\n")
	keys := make([][2]string, 0, len(m.actions))
	for k := range m.actions {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		p("selfkube_checkpointer_actions_total{checkpoint=%q,action=%q} %d\n", k[0], k[1], m.actions[k])
	}
	p("# HELP selfkube_checkpointer_writes_total Times a checkpoint was written because its pod or Secrets changed.\n")
	p("# TYPE selfkube_checkpointer_writes_total counter\n")
	for _, n := range sortedKeys(m.writes) {
		p("selfkube_checkpointer_writes_total{checkpoint=%q} %d\n", n, m.writes[n])
	}
	p("# HELP selfkube_checkpointer_checkpoint_active Whether the checkpoint runs as a static pod.\n")
	p("# TYPE selfkube_checkpointer_checkpoint_active gauge\n")
	for _, n := range sortedKeys(m.active) {
		v := 0
		if m.active[n] {
			v = 1
		}
		p("selfkube_checkpointer_checkpoint_active{checkpoint=%q} %d\n", n, v)
	}
	reachable := 0
	if m.reachable {
		reachable = 1
	}
	p("# HELP selfkube_checkpointer_api_reachable Whether the API answered the last sync.\n")
	p("# TYPE selfkube_checkpointer_api_reachable gauge\n")
	p("selfkube_checkpointer_api_reachable %d\n", reachable)
	p("# HELP selfkube_checkpointer_last_sync_timestamp_seconds When the last sync ran.\n")
	p("# TYPE selfkube_checkpointer_last_sync_timestamp_seconds gauge\n")
	p("selfkube_checkpointer_last_sync_timestamp_seconds %d\n", m.lastSync.Unix())
	n, err := w.Write(b)
	return int64(n), err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ServeHTTP serves the metrics (component.Options.Metrics serves it on /metrics).
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = m.WriteTo(w)
}

// Healthy returns nil when a sync ran within stale of now: the checkpointer's /healthz.
func (m *Metrics) Healthy(now time.Time, stale time.Duration) error {
	m.mu.Lock()
	last := m.lastSync
	m.mu.Unlock()
	if last.IsZero() || now.Sub(last) > stale {
		return errors.New("no sync for " + stale.String())
	}
	return nil
}
