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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

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

// Run serves until ctx ends.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
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
	b := NewBackends(dedupe(known), func(list []string) {
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
	log.Info("api-proxy started", "listen", opts.Listen, "backends", b.List())
	go probe(ctx, b, opts.ProbeInterval)
	if opts.Kubeconfig != "" {
		go discover(ctx, b, opts.Kubeconfig, opts.DiscoverInterval, log)
	}
	return Serve(ctx, ln, b, time.Second, log)
}

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
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
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
