// Package apiserver is selfkube's API test tier: a real etcd and a real kube-apiserver, started
// from the pinned binaries that `make components` caches, for tests that need the API server's
// own validation, defaulting and server-side apply rather than a fake.
//
//	srv := apiserver.Start(t)
//	_, err := srv.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
//	applier, err := apply.New(srv.Config) // internal/apply: what init applies with
//
// Binaries are looked up in $SELFKUBE_CACHE (default /var/cache/selfkube-test) for
// $KUBE_VERSION (default v1.36.3) and $ETCD_VERSION (default v3.6.6); when they are missing the
// test is skipped. Each Start gets its own etcd, PKI and ports; everything is stopped and
// removed when the test ends, and the processes' logs are printed if it failed.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Defaults of the environment variables that locate the binaries (the layout is in hack/README.md).
const (
	DefaultCache       = "/var/cache/selfkube-test"
	DefaultKubeVersion = "v1.36.3"
	DefaultEtcdVersion = "v3.6.6"
)

// startTimeout bounds how long etcd and kube-apiserver may take to become ready.
const startTimeout = 90 * time.Second

// logTailBytes is how much of each log a failed test prints.
const logTailBytes = 32 << 10

// Server is a running etcd and kube-apiserver.
type Server struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Client is a client built from Config.
	Client kubernetes.Interface
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// Dir holds the PKI, etcd's data and the logs until the test ends.
	Dir string

	procs []*process
}

// Binaries are the programs the test tier runs.
type Binaries struct {
	APIServer, Etcd string
}

// BinariesFromEnv locates kube-apiserver and etcd from SELFKUBE_CACHE, KUBE_VERSION and
// ETCD_VERSION, with the defaults above.
func BinariesFromEnv() Binaries {
	cache := envOr("SELFKUBE_CACHE", DefaultCache)
	return Binaries{
		APIServer: filepath.Join(cache, "bin", "kubernetes-"+envOr("KUBE_VERSION", DefaultKubeVersion), "kube-apiserver"),
		Etcd:      filepath.Join(cache, "bin", "etcd-"+envOr("ETCD_VERSION", DefaultEtcdVersion), "etcd"),
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Start starts etcd and kube-apiserver for tb and waits until the API server is ready. It
// skips the test when the binaries are missing and fails it when they do not come up.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bins := BinariesFromEnv()
	for name, path := range map[string]string{"kube-apiserver": bins.APIServer, "etcd": bins.Etcd} {
		if _, err := os.Stat(path); err != nil {
			tb.Skipf("%s not found at %s: run `make components` first", name, path)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// The ports are free when chosen and bound a moment later: a test running beside
	// this one may take one meanwhile. Such a start is thrown away and tried again.
	for attempt := 1; ; attempt++ {
		dir, err := os.MkdirTemp("", "selfkube-apiserver-")
		if err != nil {
			tb.Fatalf("creating the test server's directory: %v", err)
		}
		s := &Server{Dir: dir}
		err = s.start(ctx, bins)
		if err != nil && attempt < 3 && s.portTaken() {
			for i := len(s.procs) - 1; i >= 0; i-- {
				_ = s.procs[i].stop()
			}
			_ = os.RemoveAll(dir)
			continue
		}
		tb.Cleanup(func() { s.stop(tb) })
		if err != nil {
			tb.Fatalf("starting the test API server: %v", err)
		}
		return s
	}
}

// portTaken says whether a process of s could not bind its port.
func (s *Server) portTaken() bool {
	for _, p := range s.procs {
		if strings.Contains(p.logTail(logTailBytes), "address already in use") {
			return true
		}
	}
	return false
}

// stop stops both processes, prints their logs if the test failed, and removes Dir.
func (s *Server) stop(tb testing.TB) {
	// The API server first: it keeps talking to etcd until it exits.
	for i := len(s.procs) - 1; i >= 0; i-- {
		if err := s.procs[i].stop(); err != nil {
			tb.Errorf("stopping the test API server: %v", err)
		}
	}
	if tb.Failed() {
		for _, p := range s.procs {
			tb.Logf("--- last %d KiB of the %s log ---\n%s", logTailBytes>>10, p.name, p.logTail(logTailBytes))
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		tb.Errorf("removing %s: %v", s.Dir, err)
	}
}

func (s *Server) start(ctx context.Context, bins Binaries) error {
	certs, err := writePKI(s.Dir)
	if err != nil {
		return fmt.Errorf("writing the PKI: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.EtcdURL = clientURL
	etcd, err := startProcess("etcd", bins.Etcd, []string{
		"--name=test",
		"--data-dir=" + filepath.Join(s.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=test=" + peerURL,
		"--unsafe-no-fsync", // throwaway data: no need to wait for the disk
		"--log-level=warn",
	}, filepath.Join(s.Dir, "etcd.log"))
	if err != nil {
		return err
	}
	s.procs = append(s.procs, etcd)
	if err := waitFor(ctx, etcd, func(ctx context.Context) error { return etcdHealthy(ctx, clientURL) }); err != nil {
		return fmt.Errorf("waiting for etcd at %s: %w", clientURL, err)
	}

	port := ports[2]
	apiserver, err := startProcess("kube-apiserver", bins.APIServer, []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + certs.ServingCert,
		"--tls-private-key-file=" + certs.ServingKey,
		"--client-ca-file=" + certs.CACert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + certs.ServiceAccountKey,
		"--service-account-signing-key-file=" + certs.ServiceAccountKey,
		"--service-cluster-ip-range=10.96.0.0/12",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// A loopback address may not be an endpoint of the kubernetes Service.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}, filepath.Join(s.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	s.procs = append(s.procs, apiserver)

	s.Config = &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(port),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   certs.CACert,
			CertFile: certs.AdminCert,
			KeyFile:  certs.AdminKey,
		},
		QPS:   100,
		Burst: 200,
	}
	if s.Client, err = kubernetes.NewForConfig(s.Config); err != nil {
		return fmt.Errorf("building a client: %w", err)
	}
	ready := func(ctx context.Context) error {
		body, err := s.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return err
		}
		if string(body) != "ok" {
			return fmt.Errorf("/readyz says %q", body)
		}
		return nil
	}
	if err := waitFor(ctx, apiserver, ready); err != nil {
		return fmt.Errorf("waiting for kube-apiserver at %s/readyz: %w", s.Config.Host, err)
	}
	return nil
}

// waitFor polls check until it succeeds, p exits or ctx ends.
func waitFor(ctx context.Context, p *process, check func(context.Context) error) error {
	var last error
	for {
		if err := p.exitError(); err != nil {
			return fmt.Errorf("%w (see its log below)", err)
		}
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(attempt)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last check: %w", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func etcdHealthy(ctx context.Context, clientURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return fmt.Errorf("reading etcd /health: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("etcd /health: %s %s", resp.Status, body)
	}
	return nil
}

// freePorts finds n distinct free TCP ports on 127.0.0.1. They are free when returned; the
// processes that bind them start right after.
func freePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("finding a free port: listener has no TCP address")
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}
