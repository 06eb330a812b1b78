// Package probe measures API availability honestly, for the e2e suites' availability claims.
//
// A Prober sends requests to each target at a fixed rate without waiting for earlier answers
// (every tick starts its request in its own goroutine, so a stalled server cannot slow the
// prober down), bounds every request by a timeout (default 2 s; a slower answer is a failure of
// kind "timeout"), and by default opens a new TLS connection with a full handshake for every
// request (no keep-alive, no session resumption), and does not retry, so a request only
// succeeds if the server accepts new connections at that moment and answers it. A target
// marked KeepAlive instead asks through one long-lived client-go REST client, as controllers
// and kubelets do: keep-alive connections, and client-go's own retries (an answer's
// Retry-After, a GET whose connection was reset), whose time counts within the limit.
//
// Counting starts when the first successful (2xx) answer of a target comes: the requests sent
// before it (those in flight then included) are reported but not judged (the API was not
// known to be up). ResetWindow restarts the counting
// from the next 2xx, e.g. "from the first answer after the reboot".
//
// The Informer and WriteConfigMaps check that a watch of a given identity sees every object a
// writer created.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Defaults of Options.
const (
	DefaultRate          = 20              // requests a second, each on a new connection
	DefaultKeepAliveRate = 5               // requests a second of a KeepAlive target
	DefaultTimeout       = 2 * time.Second // bound of one request
	DefaultMaxFailures   = 10              // failures kept with their details per target
)

// Failure kinds besides HTTP status codes (which are reported as their number, e.g. "403").
const (
	KindTimeout = "timeout" // no complete answer within the timeout
	KindRefused = "refused" // connection refused
	KindReset   = "reset"   // connection reset (or broken pipe)
	KindEOF     = "eof"     // connection closed without a (complete) answer
	KindTLS     = "tls"     // TLS handshake or certificate error
	KindOther   = "other"
)

// Options configure a Prober. Zero fields take the defaults.
type Options struct {
	// Rate is the number of requests a second of each target that opens a new connection
	// per request (default 20).
	Rate float64
	// KeepAliveRate is the number of requests a second of each KeepAlive target (default 5).
	KeepAliveRate float64
	// Timeout bounds each request, from its start to the end of the answer's body
	// (default 2 s). A request over it failed with kind "timeout".
	Timeout time.Duration
	// MaxFailures is how many counted failures of each target the report details (default 10).
	MaxFailures int
}

// WithDefaults returns o with each zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.KeepAliveRate <= 0 {
		o.KeepAliveRate = DefaultKeepAliveRate
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFailures
	}
	return o
}

// Target is one identity probing one URL path.
type Target struct {
	// Name labels the target in the report.
	Name string
	// Config is the identity and the server: Host, TLS (CA, client certificate and key as
	// files or data), bearer token (or token file), and the other client-go authentication
	// options. It is not modified.
	Config *rest.Config
	// Path is the URL path and query appended to Config.Host, e.g.
	// "/api/v1/namespaces/kube-system/configmaps?limit=1" or "/api/v1/nodes/node1".
	Path string
	// KeepAlive makes the target use one long-lived client-go REST client (keep-alive
	// connections, HTTP/2 when the server offers it, client-go's retries) at
	// Options.KeepAliveRate, instead of a new TLS connection per request at Options.Rate.
	KeepAlive bool
	// Rate overrides the rate of the target's options when positive.
	Rate float64
}

// KeepAlive returns t probed through one long-lived keep-alive client, named "NAME keep-alive".
func KeepAlive(t Target) Target {
	t.Name += " keep-alive"
	t.KeepAlive = true
	return t
}

// Prober probes its targets until Stop.
type Prober struct {
	opts    Options
	targets []*target
	reqCtx  context.Context // requests outlive a cancelled parent context: Stop waits for them
	stop    chan struct{}
	loops   sync.WaitGroup
	flying  sync.WaitGroup
	started time.Time

	mu      sync.Mutex
	resetAt time.Time // requests of slots before it never start the counting window
	once    sync.Once
	report  Report
}

type target struct {
	Target
	url    string
	rate   float64
	client *http.Client
	rest   *rest.RESTClient // the keep-alive target's requests go through client-go's

	mu      sync.Mutex
	results []result
	stopped time.Time // when the target's loop stopped sending
}

// result is one finished request.
type result struct {
	slot    time.Time // when the fixed rate meant to send it
	sent    time.Time // when it was sent (at most MaxLateness after its slot)
	latency time.Duration
	kind    string // "" when it succeeded
	err     string
}

func (r result) answered() time.Time { return r.sent.Add(r.latency) }

// Start builds a client per target and starts probing each at its fixed rate until Stop is
// called or ctx ends (requests in flight then still finish within the timeout). It fails if a
// target's configuration does not give an HTTP client.
func Start(ctx context.Context, opts Options, targets ...Target) (*Prober, error) {
	opts = opts.WithDefaults()
	p := &Prober{opts: opts, reqCtx: context.WithoutCancel(ctx), stop: make(chan struct{})}
	if len(targets) == 0 {
		return nil, errors.New("probe: no targets")
	}
	names := map[string]bool{}
	for _, tg := range targets {
		if names[tg.Name] {
			return nil, fmt.Errorf("probe: two targets are named %q", tg.Name)
		}
		names[tg.Name] = true
		t, err := newTarget(tg, opts)
		if err != nil {
			return nil, fmt.Errorf("probe: target %q: %w", tg.Name, err)
		}
		p.targets = append(p.targets, t)
	}
	p.started = time.Now()
	for _, t := range p.targets {
		p.loops.Add(1)
		go p.run(ctx, t)
	}
	return p, nil
}

func newTarget(tg Target, opts Options) (*target, error) {
	if tg.Config == nil {
		return nil, errors.New("no rest.Config")
	}
	if !strings.HasPrefix(tg.Path, "/") {
		return nil, fmt.Errorf("path %q does not start with /", tg.Path)
	}
	host := strings.TrimRight(tg.Config.Host, "/")
	if host == "" {
		return nil, errors.New("rest.Config has no Host")
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	t := &target{Target: tg, url: host + tg.Path, rate: tg.Rate}
	var err error
	if tg.KeepAlive {
		if t.rate <= 0 {
			t.rate = opts.KeepAliveRate
		}
		t.client, err = keepAliveClient(tg.Config)
		if err == nil {
			t.rest, err = restClientFor(tg.Config, t.client)
		}
	} else {
		if t.rate <= 0 {
			t.rate = opts.Rate
		}
		t.client, err = newConnectionClient(tg.Config)
	}
	if err != nil {
		return nil, err
	}
	t.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return t, nil
}

// newConnectionClient returns a client that opens a new TLS connection, with a full handshake,
// for every request: keep-alives are off and the TLS configuration has no session cache, so
// nothing of an earlier connection is reused. TLS and authentication come from client-go
// (rest.TLSConfigFor and rest.HTTPWrappersForConfig), so client certificates from files or
// data, bearer tokens (also from a file), basic auth, exec plugins and impersonation work as in
// any client-go client.
func newConnectionClient(cfg *rest.Config) (*http.Client, error) {
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tlsConfig.ClientSessionCache = nil // no session resumption
	proxy := http.ProxyFromEnvironment // as client-go
	if cfg.Proxy != nil {
		proxy = cfg.Proxy
	}
	dial := (&net.Dialer{}).DialContext
	if cfg.Dial != nil {
		dial = cfg.Dial
	}
	base := &http.Transport{
		Proxy:              proxy,
		DialContext:        dial,
		TLSClientConfig:    tlsConfig,
		DisableKeepAlives:  true,
		DisableCompression: cfg.DisableCompression,
		ForceAttemptHTTP2:  false, // HTTP/1.1: one request, one connection
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, base)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt}, nil
}

// keepAliveClient returns a long-lived client-go HTTP client of its own: the same transport a
// client-go client gets (keep-alive, HTTP/2 with its health checks, certificate rotation), but
// not shared through client-go's transport cache with other clients of the process (a config
// with its own Dial function is never shared).
func keepAliveClient(cfg *rest.Config) (*http.Client, error) {
	c := rest.CopyConfig(cfg)
	if c.Dial == nil {
		c.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	c.Timeout = 0 // every request has its own deadline
	client, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: client.Transport}, nil
}

// restClientFor is the client-go REST client a keep-alive target asks through: it follows
// an answer's Retry-After (an apiserver that is shutting down answers a request that
// reached it on an old connection with 503 and Retry-After: 1) and retries a GET whose
// connection was reset, as every client-go client does; the time that takes counts in
// the request's latency, within its limit. Its rate limiter is off: the prober keeps the
// rate.
func restClientFor(cfg *rest.Config, client *http.Client) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.QPS = -1
	cs, err := kubernetes.NewForConfigAndClient(c, client)
	if err != nil {
		return nil, err
	}
	rc, ok := cs.Discovery().RESTClient().(*rest.RESTClient)
	if !ok {
		return nil, fmt.Errorf("the discovery REST client is a %T", cs.Discovery().RESTClient())
	}
	return rc, nil
}

// restGet makes the request through a client-go REST client; a non-2xx answer is
// returned as its status code, not as an error.
func restGet(ctx context.Context, c *rest.RESTClient, uri string) (int, error) {
	var code int
	res := c.Get().RequestURI(uri).SetHeader("Accept", "application/json").Do(ctx)
	res.StatusCode(&code)
	err := res.Error()
	var status apierrors.APIStatus
	if err != nil && code != 0 && errors.As(err, &status) {
		return code, nil
	}
	return code, err
}

// MaxLateness is how late the prober may send a request after its slot of the fixed rate, when
// it was not scheduled in time (a busy machine): a slot missed by more is dropped, so a prober
// that lags sends fewer requests than intended, which the report judges.
const MaxLateness = 250 * time.Millisecond

// run sends t's requests in the slots of its fixed rate, each in its own goroutine.
func (p *Prober) run(ctx context.Context, t *target) {
	defer p.loops.Done()
	defer func() {
		t.mu.Lock()
		t.stopped = time.Now()
		t.mu.Unlock()
	}()
	interval := time.Duration(float64(time.Second) / t.rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		for ; !next.After(now); next = next.Add(interval) {
			select {
			case <-p.stop:
				return
			default:
			}
			if now.Sub(next) <= MaxLateness {
				p.flying.Add(1)
				go p.send(t, next)
			}
		}
		timer.Reset(time.Until(next))
	}
}

// send makes one request and records its result.
func (p *Prober) send(t *target, slot time.Time) {
	defer p.flying.Done()
	ctx, cancel := context.WithTimeout(p.reqCtx, p.opts.Timeout)
	defer cancel()
	sent := time.Now()
	var code int
	var err error
	if t.rest != nil {
		code, err = restGet(ctx, t.rest, t.Path)
	} else {
		code, err = get(ctx, t.client, t.url)
	}
	r := result{slot: slot, sent: sent, latency: time.Since(sent)}
	r.kind = classify(ctx, code, err, r.latency > p.opts.Timeout)
	if r.kind != "" {
		if err != nil {
			r.err = err.Error()
		} else {
			r.err = fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
		}
	}
	t.mu.Lock()
	t.results = append(t.results, r)
	t.mu.Unlock()
}

// get makes the request and reads the whole answer.
func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("reading the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}

// classify returns "" for a success (a complete 2xx answer within the timeout), else the kind
// of failure.
func classify(ctx context.Context, code int, err error, late bool) string {
	if err == nil {
		switch {
		case late:
			return KindTimeout
		case code >= 200 && code < 300:
			return ""
		default:
			return strconv.Itoa(code)
		}
	}
	var netErr net.Error
	var certInvalid x509.CertificateInvalidError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verification *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	var opErr *net.OpError
	switch {
	case late, errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return KindReset
	case errors.As(err, &certInvalid), errors.As(err, &unknownAuthority), errors.As(err, &hostname),
		errors.As(err, &verification), errors.As(err, &record), errors.As(err, &alert),
		errors.As(err, &opErr) && opErr.Op == "remote error":
		return KindTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindEOF
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "connection refused"):
		return KindRefused
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return KindReset
	case strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"):
		return KindTLS
	case strings.HasSuffix(msg, "EOF"), strings.Contains(msg, "server closed"):
		return KindEOF
	}
	return KindOther
}

// ResetWindow restarts the counting of every target: the window of a target starts anew with
// the first 2xx answer to a request (of a slot) after this call. Requests before the new
// window are reported as sent before it, not judged.
func (p *Prober) ResetWindow() {
	p.mu.Lock()
	p.resetAt = time.Now()
	p.mu.Unlock()
}

// Stop stops sending, waits for the requests in flight (at most the timeout) and returns the
// report. Later calls return the same report.
func (p *Prober) Stop() Report {
	p.once.Do(func() {
		close(p.stop)
		p.loops.Wait()
		p.flying.Wait()
		p.mu.Lock()
		resetAt := p.resetAt
		p.mu.Unlock()
		p.report = Report{Started: p.started, Stopped: time.Now(), Timeout: p.opts.Timeout}
		for _, t := range p.targets {
			t.mu.Lock()
			p.report.Targets = append(p.report.Targets, t.report(resetAt, p.opts.MaxFailures))
			t.mu.Unlock()
		}
	})
	return p.report
}
