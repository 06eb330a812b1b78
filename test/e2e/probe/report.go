package probe

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// MinSentRatio is the share of the intended requests a target must have sent in its window: a
// prober that lags behind its rate measured less than it claims.
const MinSentRatio = 0.9

// Report is what a Prober measured.
type Report struct {
	Started, Stopped time.Time
	Timeout          time.Duration
	Targets          []TargetReport
}

// TargetReport is the measurement of one target. Its window starts when the first 2xx answer
// (to a request sent after the last ResetWindow) came and ends when the prober stopped; only
// the requests of the slots (of the fixed rate) in the window are counted
// (Counted = OK + Failed).
type TargetReport struct {
	Name      string
	URL       string
	KeepAlive bool
	Rate      float64 // requests a second

	// Sent is every request sent; Before of them were sent before the window (their
	// failures, by kind, are in BeforeByKind) and are not judged.
	Sent         int
	Before       int
	BeforeByKind map[string]int

	// WindowStart is when the first 2xx answer came (zero: no 2xx), WindowEnd when the
	// prober stopped sending.
	WindowStart, WindowEnd time.Time
	// Intended is Rate × (WindowEnd − WindowStart): the requests the window should have.
	Intended float64

	Counted, OK, Failed int
	ByKind              map[string]int // counted failures by kind: "403", "timeout", "refused", …

	// Latencies of the counted requests, failed ones included with the time they took.
	P50, P99, Max time.Duration
	// MaxLate is the longest a counted request was sent after its slot (at most MaxLateness:
	// a slot missed by more is not sent, which shows as fewer requests than intended).
	MaxLate time.Duration

	// Failures are the first counted failures, by the time they were sent.
	Failures []Failure
}

// Failure is one failed request.
type Failure struct {
	Sent    time.Time
	Latency time.Duration
	Kind    string
	Err     string
}

func (f Failure) String() string {
	return fmt.Sprintf("%s sent, %s later: %s: %s", f.Sent.Format("15:04:05.000"), fmtDuration(f.Latency), f.Kind, f.Err)
}

// report evaluates t's results; t.mu is held.
func (t *target) report(resetAt time.Time, maxFailures int) TargetReport {
	rep := TargetReport{
		Name: t.Name, URL: t.url, KeepAlive: t.KeepAlive, Rate: t.rate,
		Sent: len(t.results), WindowEnd: t.stopped,
		BeforeByKind: map[string]int{}, ByKind: map[string]int{},
	}
	results := append([]result(nil), t.results...)
	sort.Slice(results, func(i, j int) bool { return results[i].slot.Before(results[j].slot) })

	// The window starts when the first 2xx answer (to a request of a slot after the reset)
	// came: a client learns that the API is up only then. The requests already in flight
	// at that moment were sent before anyone could know it, and are not judged (at an
	// apiserver's start, one of them may meet the authorizer a moment before it is ready
	// while another, sent earlier, is answered just after).
	var first *result
	for i := range results {
		r := &results[i]
		if r.kind == "" && !r.slot.Before(resetAt) && (first == nil || r.answered().Before(first.answered())) {
			first = r
		}
	}
	var latencies []time.Duration
	for _, r := range results {
		if first == nil || r.slot.Before(first.answered()) {
			rep.Before++
			if r.kind != "" {
				rep.BeforeByKind[r.kind]++
			}
			continue
		}
		rep.Counted++
		latencies = append(latencies, r.latency)
		rep.MaxLate = max(rep.MaxLate, r.sent.Sub(r.slot))
		if r.kind == "" {
			rep.OK++
			continue
		}
		rep.Failed++
		rep.ByKind[r.kind]++
		if len(rep.Failures) < maxFailures {
			rep.Failures = append(rep.Failures, Failure{Sent: r.sent, Latency: r.latency, Kind: r.kind, Err: r.err})
		}
	}
	if first != nil {
		rep.WindowStart = first.answered()
		rep.Intended = t.rate * rep.WindowEnd.Sub(rep.WindowStart).Seconds()
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	rep.P50, rep.P99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	if n := len(latencies); n > 0 {
		rep.Max = latencies[n-1]
	}
	return rep
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Err judges the target: it fails when the target never answered 2xx, when it sent fewer
// than MinSentRatio of the intended requests in its window, or when a counted request failed.
func (r TargetReport) Err() error {
	var errs []error
	if r.WindowStart.IsZero() {
		errs = append(errs, fmt.Errorf("%s: no 2xx answer to any of %d requests (%s)", r.Name, r.Sent, kinds(r.BeforeByKind)))
	} else if float64(r.Counted) < MinSentRatio*r.Intended {
		errs = append(errs, fmt.Errorf("%s: the prober sent %d requests in %s, fewer than %.0f%% of the %.0f intended at %g/s: the measurement is not honest",
			r.Name, r.Counted, fmtDuration(r.WindowEnd.Sub(r.WindowStart)), 100*MinSentRatio, r.Intended, r.Rate))
	}
	if r.Failed > 0 {
		msg := fmt.Sprintf("%s: %d of %d requests failed (%s)", r.Name, r.Failed, r.Counted, kinds(r.ByKind))
		if len(r.Failures) > 0 {
			msg += "; first: " + r.Failures[0].String()
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// Err is the verdict over all targets: nil only if every target answered, was probed at its
// rate, and no counted request failed.
func (r Report) Err() error {
	var errs []error
	for _, t := range r.Targets {
		errs = append(errs, t.Err())
	}
	return errors.Join(errs...)
}

// Target returns the report of the target named name.
func (r Report) Target(name string) (TargetReport, bool) {
	for _, t := range r.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return TargetReport{}, false
}

// Table renders a markdown table, one row per target.
func (r Report) Table() string {
	var b strings.Builder
	b.WriteString("| target | sent | ok | failed (by kind) | p50 | p99 | max |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		b.WriteString(t.row())
		b.WriteByte('\n')
	}
	return b.String()
}

func (t TargetReport) row() string {
	name := strings.ReplaceAll(t.Name, "|", `\|`)
	if t.WindowStart.IsZero() {
		return fmt.Sprintf("| %s | %d, no 2xx (%s) | 0 | - | - | - | - |", name, t.Sent, kinds(t.BeforeByKind))
	}
	sent := fmt.Sprintf("%d of %.0f intended", t.Counted, t.Intended)
	if t.Before > 0 {
		sent += fmt.Sprintf(" (+%d before)", t.Before)
	}
	failed := "0"
	if t.Failed > 0 {
		failed = fmt.Sprintf("%d (%s)", t.Failed, kinds(t.ByKind))
	}
	return fmt.Sprintf("| %s | %s | %d | %s | %s | %s | %s |", name, sent, t.OK, failed, fmtDuration(t.P50), fmtDuration(t.P99), fmtDuration(t.Max))
}

// String renders the table, the window of each target, its first failures and the verdict.
func (r Report) String() string {
	var b strings.Builder
	b.WriteString(r.Table())
	for _, t := range r.Targets {
		if t.WindowStart.IsZero() {
			continue
		}
		fmt.Fprintf(&b, "%s: %s, %g/s, counted from %s to %s, sent up to %s after the slot\n", t.Name, t.URL, t.Rate,
			t.WindowStart.Format("15:04:05.000"), t.WindowEnd.Format("15:04:05.000"), fmtDuration(t.MaxLate))
		for _, f := range t.Failures {
			fmt.Fprintf(&b, "  %s\n", f)
		}
		if t.Failed > len(t.Failures) {
			fmt.Fprintf(&b, "  … %d more failures\n", t.Failed-len(t.Failures))
		}
	}
	if err := r.Err(); err != nil {
		fmt.Fprintf(&b, "verdict: FAIL\n%v\n", err)
	} else {
		b.WriteString("verdict: ok\n")
	}
	return b.String()
}

// kinds renders failure counts as "timeout 3, 403 1", most frequent first.
func kinds(m map[string]int) string {
	if len(m) == 0 {
		return "no failures"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < 10*time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}
