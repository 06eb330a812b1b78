package apiproxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/selfkube/selfkube/internal/component"
	"github.com/selfkube/selfkube/internal/host"
)

// Options are the settings of `selfkube api-proxy`, one flag each.
type Options struct {
	// Listen is the proxy's address (on loopback).
	Listen string
	// Backends are apiserver addresses (host:port) to start with.
	Backends []string
	// Kubeconfig is a kubeconfig (the kubelet's, pointing at this proxy) to read the
	// kubernetes Service's endpoints with; empty: no discovery.
	Kubeconfig string
	// StateFile remembers the backends last known.
	StateFile string
	// ProbeInterval is how often every backend's /readyz is asked; DiscoverInterval how
	// often the endpoints are read.
	ProbeInterval, DiscoverInterval time.Duration
}

// Components are what `selfkube api-proxy` runs with component.Run: the Proxy alone, with
// no health listener.
func Components(opts Options, log *slog.Logger) (component.Options, []component.Component, error) {
	return component.Options{Log: log}, []component.Component{New(opts, log)}, nil
}

// Proxy is the API load balancer of one node, a component.Component (see the state
// diagram there) and a component.Failer:
//
//	Init   reads the backends (Options.Backends and StateFile), listens on Options.Listen
//	Start  forwards connections, probes the backends, reads the endpoints (with Kubeconfig)
//	Stop   closes the listener and waits for the loops; forwarded connections go on
//	Failed delivers the error of the listener if accepting fails
type Proxy struct {
	opts Options
	log  *slog.Logger

	life     component.Lifecycle
	backends *Backends
	ln       net.Listener
	cancel   context.CancelFunc
	done     sync.WaitGroup
	failed   chan error
}

// New returns a proxy in state created.
func New(opts Options, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{opts: opts, log: log, failed: make(chan error, 1)}
	p.life.Name = "api-proxy"
	return p
}

// Init implements component.Component.
func (p *Proxy) Init(_ context.Context) error {
	return p.life.Init(func() error {
		opts, log := p.opts, p.log
		known := append([]string{}, opts.Backends...)
		if data, err := os.ReadFile(opts.StateFile); err == nil {
			var saved []string
			if json.Unmarshal(data, &saved) == nil {
				known = append(known, saved...)
			}
		} else if opts.StateFile != "" && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("reading the backends last known", "err", err)
		}
		if len(known) == 0 {
			return errors.New("no apiserver to forward to: pass --backend")
		}
		p.backends = NewBackends(dedupe(known), func(list []string) {
			log.Info("apiservers", "backends", list)
			if opts.StateFile == "" {
				return
			}
			data, _ := json.Marshal(list)
			if _, err := host.WriteFile(opts.StateFile, data, 0o600); err != nil {
				log.Warn("remembering the backends", "err", err)
			}
		})
		ln, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", opts.Listen, err)
		}
		p.ln = ln
		return nil
	})
}

// Start implements component.Component.
func (p *Proxy) Start(ctx context.Context) error {
	return p.life.Start(func() error {
		ctx, p.cancel = context.WithCancel(ctx)
		p.log.Info("api-proxy started", "listen", p.opts.Listen, "backends", p.backends.List())
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			probe(ctx, p.backends, p.opts.ProbeInterval)
		}()
		if p.opts.Kubeconfig != "" {
			p.done.Add(1)
			go func() {
				defer p.done.Done()
				discover(ctx, p.backends, p.opts.Kubeconfig, p.opts.DiscoverInterval, p.log)
			}()
		}
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			if err := Serve(ctx, p.ln, p.backends, time.Second, p.log); err != nil {
				p.failed <- err
			}
		}()
		return nil
	})
}

// Stop implements component.Component.
func (p *Proxy) Stop() error {
	return p.life.Stop(func(from component.State) error {
		switch from {
		case component.Running:
			p.cancel() // Serve closes the listener
			p.done.Wait()
		case component.Initialized:
			p.ln.Close()
		}
		return nil
	})
}

// Failed implements component.Failer.
func (p *Proxy) Failed() <-chan error { return p.failed }

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// probe asks every backend's /readyz (anonymously allowed) each interval. It does not
// verify the certificate: a probe only chooses where connections go, and the clients
// verify the apiserver themselves.
func probe(ctx context.Context, b *Backends, interval time.Duration) {
	client := &http.Client{
		Timeout:   interval,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // see above
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, a := range b.List() {
			go func(a string) {
				resp, err := client.Get("https://" + a + "/readyz")
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					resp.Body.Close()
				}
				b.SetHealth(a, ok)
			}(a)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// discover reads the endpoints of the kubernetes Service, the apiservers the cluster
// knows, through the proxy itself.
func discover(ctx context.Context, b *Backends, kubeconfig string, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if addrs, err := endpoints(ctx, kubeconfig); err != nil {
			log.Debug("reading the apiserver endpoints", "err", err)
		} else {
			b.Set(addrs)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func endpoints(ctx context.Context, kubeconfig string) ([]string, error) {
	cfg, err := component.RESTConfig(kubeconfig, "")
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	cfg.WarningHandler = rest.NoWarnings{} // v1 Endpoints is deprecated; it is also the narrowest grant
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ep, err := client.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{}) //nolint:staticcheck // see above
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range ep.Subsets {
		for _, p := range s.Ports {
			for _, a := range s.Addresses {
				out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	return dedupe(out), nil
}
