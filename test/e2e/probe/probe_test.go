package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// server is a TLS test server that counts connections, handshakes and resumed sessions.
type server struct {
	*httptest.Server
	conns, handshakes, requests, resumed atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.TLS != nil && r.TLS.DidResume {
			s.resumed.Add(1)
		}
		h(w, r)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert(t)},
		ClientAuth:   tls.RequestClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.handshakes.Add(1)
			return nil, nil
		},
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

var (
	serverCertOnce sync.Once
	serverCertPair tls.Certificate
	serverCertErr  error
)

// serverCert is a self-signed ECDSA certificate for 127.0.0.1: cheaper handshakes than
// httptest's RSA certificate, so the tests measure the prober and not the CPU.
func serverCert(t *testing.T) tls.Certificate {
	serverCertOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			serverCertErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "probe test server"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			serverCertErr = err
			return
		}
		serverCertPair = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	if serverCertErr != nil {
		t.Fatal(serverCertErr)
	}
	return serverCertPair
}

// config is a rest.Config that trusts s.
func (s *server) config() *rest.Config {
	return &rest.Config{Host: s.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}),
	}}
}

func ok(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"kind":"Status"}`)) }

func start(t *testing.T, opts Options, targets ...Target) *Prober {
	t.Helper()
	p, err := Start(context.Background(), opts, targets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

func targetOf(t *testing.T, rep Report, name string) TargetReport {
	t.Helper()
	tr, found := rep.Target(name)
	if !found {
		t.Fatalf("no target %q in the report", name)
	}
	return tr
}

// (a) A 5 s stall of the server does not slow the prober down: ~100 requests reach the server
// during the stall at 20/s, and those over 2 s are timeouts.
func TestRateKeptWhileServerStalls(t *testing.T) {
	t.Parallel()
	var stallFrom, stallUntil atomic.Int64 // unix nanos
	var mu sync.Mutex
	var arrivals []time.Time
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		arrivals = append(arrivals, now)
		mu.Unlock()
		if until := time.Unix(0, stallUntil.Load()); now.Before(until) {
			select {
			case <-time.After(until.Sub(now)):
			case <-r.Context().Done():
				return
			}
		}
		ok(w, r)
	})
	p := start(t, Options{}, Target{Name: "new", Config: s.config(), Path: "/api"},
		KeepAlive(Target{Name: "ka", Config: s.config(), Path: "/api"}))
	time.Sleep(500 * time.Millisecond)
	from := time.Now()
	stallFrom.Store(from.UnixNano())
	stallUntil.Store(from.Add(5 * time.Second).UnixNano())
	time.Sleep(5500 * time.Millisecond)
	rep := p.Stop()
	t.Logf("\n%s", rep)

	mu.Lock()
	during := 0
	for _, a := range arrivals {
		if !a.Before(from) && a.Before(from.Add(5*time.Second)) {
			during++
		}
	}
	mu.Unlock()
	// 20/s on new connections + 5/s keep-alive over 5 s = 125; a prober that waited for
	// answers would send fewer than 10. (Bounds leave room for a busy machine.)
	if during < 90 {
		t.Errorf("only %d requests reached the server during the 5 s stall, want ~125: the prober waited for answers", during)
	}

	n := targetOf(t, rep, "new")
	if n.Counted < 90 {
		t.Errorf("new-connection target sent %d requests in its window, intended %.0f (~120)", n.Counted, n.Intended)
	}
	// Requests sent in the first 3 s of the stall wait more than 2 s: ~60 timeouts.
	if to := n.ByKind[KindTimeout]; to < 40 || to > 70 || len(n.ByKind) != 1 {
		t.Errorf("failures by kind %v, want ~60 timeouts only", n.ByKind)
	}
	if n.Max < 2*time.Second || n.Max > 3500*time.Millisecond { // a busy machine ends late
		t.Errorf("max latency %s, want just over the 2 s timeout", n.Max)
	}
	ka := targetOf(t, rep, "ka keep-alive")
	if ka.Counted < 22 || ka.ByKind[KindTimeout] < 9 || ka.ByKind[KindTimeout] > 18 || len(ka.ByKind) != 1 {
		t.Errorf("keep-alive target: %d counted (want ~30), failures %v (want ~15 timeouts)", ka.Counted, ka.ByKind)
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("Err() = %v, want the timeouts", err)
	}
}

// (b) Every request of a new-connection target is a new TCP connection with a full TLS
// handshake; a keep-alive target reuses its connection.
func TestNewConnectionPerRequest(t *testing.T) {
	s := newServer(t, ok)
	ks := newServer(t, ok)
	p := start(t, Options{}, Target{Name: "new", Config: s.config(), Path: "/api"},
		KeepAlive(Target{Name: "ka", Config: ks.config(), Path: "/api", Rate: 20}))
	waitUntil(t, "20 requests of each target", func() bool { return s.requests.Load() >= 20 && ks.requests.Load() >= 20 })
	rep := p.Stop()
	t.Logf("\n%s", rep.Table())

	n := targetOf(t, rep, "new")
	// The first answer opens the window; every request is ok.
	if n.Sent < 20 || n.OK+n.Before != n.Sent || len(n.BeforeByKind) != 0 {
		t.Fatalf("new-connection target: sent %d, ok %d, %d before the window (%v); want ~21, all ok", n.Sent, n.OK, n.Before, n.BeforeByKind)
	}
	if c, h, r := s.conns.Load(), s.handshakes.Load(), s.requests.Load(); c != int64(n.Sent) || h != int64(n.Sent) || r != int64(n.Sent) {
		t.Errorf("%d requests sent, the server saw %d connections, %d handshakes, %d requests", n.Sent, c, h, r)
	}
	if r := s.resumed.Load(); r != 0 {
		t.Errorf("%d TLS sessions were resumed", r)
	}
	ka := targetOf(t, rep, "ka keep-alive")
	if ka.Sent < 20 || ka.OK+ka.Before != ka.Sent || len(ka.BeforeByKind) != 0 || ks.conns.Load() > int64(ka.Sent)/3 {
		t.Errorf("keep-alive target: %d sent, %d ok over %d connections; want ~21 over a few", ka.Sent, ka.OK, ks.conns.Load())
	}

	// The server does resume sessions: a client with a session cache gets resumed, so the
	// check above can fail.
	tlsCfg, err := rest.TLSConfigFor(s.config())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
	for range 3 {
		resp, err := c.Get(s.URL + "/api")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if s.resumed.Load() == 0 {
		t.Error("a client with a session cache was never resumed: the resumption check proves nothing")
	}
}

// (c) Failures before the first 2xx are reported but not counted; failures after it are;
// ResetWindow restarts the counting from the next 2xx.
func TestCountingWindow(t *testing.T) {
	// The server's answers follow the requests it has handled, so the phases do not depend on
	// how fast a busy machine runs the prober.
	var handled atomic.Int64
	var status func(n int64) int
	var mu sync.Mutex
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := handled.Add(1)
		mu.Lock()
		code := status(n)
		mu.Unlock()
		w.WriteHeader(code)
	})
	setStatus := func(f func(n int64) int) {
		mu.Lock()
		status = f
		mu.Unlock()
	}
	tg := Target{Name: "api", Config: s.config(), Path: "/api"}

	handled.Store(0)
	setStatus(func(n int64) int {
		switch {
		case n <= 10, n > 20 && n <= 26:
			return 503
		}
		return 200
	})
	p := start(t, Options{}, tg)
	waitUntil(t, "36 requests", func() bool { return handled.Load() >= 36 })
	rep := p.Stop()
	t.Logf("\n%s", rep)
	r := targetOf(t, rep, "api")
	// Requests started together may reach the server in another order than their slots.
	if r.BeforeByKind["503"] < 7 || len(r.BeforeByKind) != 1 {
		t.Errorf("before the first 2xx: %d sent, %v; want ~10 503s, not counted", r.Before, r.BeforeByKind)
	}
	if r.ByKind["503"] < 4 || r.ByKind["503"] > 9 || len(r.ByKind) != 1 || r.OK < 15 {
		t.Errorf("counted: %d ok, failures %v; want ~20 ok and ~6 503s", r.OK, r.ByKind)
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "(503 ") {
		t.Errorf("Err() = %v, want the 503s after the first 2xx", err)
	}

	// A reboot: after ResetWindow, counting starts again with the next 2xx.
	handled.Store(0)
	setStatus(func(n int64) int {
		if n <= 6 {
			return 503
		}
		return 200
	})
	p = start(t, Options{}, tg)
	waitUntil(t, "16 requests", func() bool { return handled.Load() >= 16 })
	setStatus(func(int64) int { return 503 })
	p.ResetWindow()
	waitUntil(t, "26 requests", func() bool { return handled.Load() >= 26 })
	healthyAgain := time.Now()
	setStatus(func(int64) int { return 200 })
	waitUntil(t, "36 requests", func() bool { return handled.Load() >= 36 })
	rep = p.Stop()
	t.Logf("\n%s", rep)
	r = targetOf(t, rep, "api")
	// "Kubelet start → first 2xx" in the benchmark reads WindowStart: it is the answer
	// after the server came back, not one from before the reset.
	if r.WindowStart.Before(healthyAgain) {
		t.Errorf("window from %s; the server answered 2xx again only from %s",
			r.WindowStart.Format("15:04:05.000"), healthyAgain.Format("15:04:05.000"))
	}
	if r.Failed != 0 || r.OK < 8 || r.Before < 24 || r.BeforeByKind["503"] < 14 {
		t.Errorf("after ResetWindow: %d ok, %d failed, %d before (%v); want ~10 ok, 0 failed, ~26 before with ~16 503s",
			r.OK, r.Failed, r.Before, r.BeforeByKind)
	}
}

// waitUntil polls cond for at most 15 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// (d) Failures are classified: HTTP status, closed connection, reset, refused, TLS.
func TestClassification(t *testing.T) {
	var counts sync.Map
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		v, _ := counts.LoadOrStore(r.URL.Path, new(atomic.Int64))
		if v.(*atomic.Int64).Add(1) <= 2 { // the first answers succeed: the window starts
			ok(w, r)
			return
		}
		switch r.URL.Path {
		case "/forbidden":
			http.Error(w, "forbidden", http.StatusForbidden)
		case "/eof", "/reset":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			if r.URL.Path == "/reset" { // no close_notify; RST instead of FIN
				tcp := conn.(*tls.Conn).NetConn().(*net.TCPConn)
				tcp.SetLinger(0)
				tcp.Close()
				return
			}
			conn.Close()
		}
	})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	refused := s.config()
	refused.Host = "https://" + closed.Addr().String()
	wrongCA := s.config()
	wrongCA.CAData, _ = clientCert(t, "not the server's CA")

	p := start(t, Options{},
		Target{Name: "forbidden", Config: s.config(), Path: "/forbidden"},
		Target{Name: "eof", Config: s.config(), Path: "/eof"},
		Target{Name: "reset", Config: s.config(), Path: "/reset"},
		Target{Name: "refused", Config: refused, Path: "/api"},
		Target{Name: "wrong CA", Config: wrongCA, Path: "/api"})
	waitUntil(t, "10 requests of each path", func() bool {
		for _, path := range []string{"/forbidden", "/eof", "/reset"} {
			if v, _ := counts.Load(path); v == nil || v.(*atomic.Int64).Load() < 10 {
				return false
			}
		}
		return true
	})
	rep := p.Stop()
	t.Logf("\n%s", rep)

	for name, kind := range map[string]string{"forbidden": "403", "eof": KindEOF, "reset": KindReset} {
		r := targetOf(t, rep, name)
		// Two 2xx first: the first opens the window, the second is counted.
		if r.OK != 1 || r.Failed < 8 || r.ByKind[kind] != r.Failed || r.Failures[0].Kind != kind {
			t.Errorf("%s: %d ok, failures %v; want 1 ok counted, then only %q", name, r.OK, r.ByKind, kind)
		}
	}
	if r := targetOf(t, rep, "forbidden"); !strings.Contains(r.Failures[0].Err, "403") {
		t.Errorf("failure text %q does not tell the status", r.Failures[0].Err)
	}
	for name, kind := range map[string]string{"refused": KindRefused, "wrong CA": KindTLS} {
		r := targetOf(t, rep, name)
		if r.Sent < 3 || r.BeforeByKind[kind] != r.Sent || !r.WindowStart.IsZero() {
			t.Errorf("%s: %d sent, %v; want only %q and no window", name, r.Sent, r.BeforeByKind, kind)
		}
	}
	err = rep.Err()
	for _, want := range []string{"forbidden: ", "(403 ", "eof: ", "reset: ", "refused: no 2xx", "wrong CA: no 2xx answer to any of"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %v, want it to contain %q", err, want)
		}
	}
}

func TestClassifyErrors(t *testing.T) {
	ctx := context.Background()
	expired, cancel := context.WithTimeout(ctx, 0)
	defer cancel()
	<-expired.Done()
	for _, c := range []struct {
		ctx  context.Context
		code int
		err  error
		late bool
		want string
	}{
		{ctx, 200, nil, false, ""},
		{ctx, 204, nil, false, ""},
		{ctx, 200, nil, true, KindTimeout},
		{ctx, 403, nil, false, "403"},
		{ctx, 500, nil, false, "500"},
		{expired, 0, errors.New("net/http: request canceled"), false, KindTimeout},
		{ctx, 0, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false, KindRefused},
		{ctx, 0, errors.New("read: connection reset by peer"), false, KindReset},
		{ctx, 0, &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, false, KindTLS},
		{ctx, 0, x509.UnknownAuthorityError{}, false, KindTLS},
		{ctx, 0, errors.New(`Get "https://x": EOF`), false, KindEOF},
		{ctx, 0, errors.New("no route to host"), false, KindOther},
	} {
		if got := classify(c.ctx, c.code, c.err, c.late); got != c.want {
			t.Errorf("classify(%d, %v, late %v) = %q, want %q", c.code, c.err, c.late, got, c.want)
		}
	}
}

// (e) The verdict: no success, failures and under-sending fail.
func TestVerdict(t *testing.T) {
	start := time.Now()
	healthy := TargetReport{Name: "t", Rate: 20, Sent: 205, Before: 5, WindowStart: start, WindowEnd: start.Add(10 * time.Second),
		Intended: 200, Counted: 200, OK: 200, ByKind: map[string]int{}, BeforeByKind: map[string]int{"refused": 5}}
	if err := (Report{Targets: []TargetReport{healthy}}).Err(); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	atLimit := healthy
	atLimit.Counted, atLimit.OK = 180, 180
	if err := atLimit.Err(); err != nil {
		t.Errorf("90%% sent: %v", err)
	}
	under := healthy
	under.Counted, under.OK = 179, 179
	failed := healthy
	failed.OK, failed.Failed, failed.ByKind = 199, 1, map[string]int{"timeout": 1}
	failed.Failures = []Failure{{Sent: start, Latency: 2 * time.Second, Kind: "timeout", Err: "context deadline exceeded"}}
	none := TargetReport{Name: "t", Rate: 20, Sent: 40, Before: 40, BeforeByKind: map[string]int{"403": 40}}
	for name, c := range map[string]struct {
		r    TargetReport
		want string
	}{
		"under-sending": {under, "not honest"},
		"failure":       {failed, "1 of 200 requests failed (timeout 1)"},
		"no success":    {none, "no 2xx answer to any of 40 requests (403 40)"},
	} {
		err := (Report{Targets: []TargetReport{healthy, c.r}}).Err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Err() = %v, want %q", name, err, c.want)
		}
	}

	table := (Report{Targets: []TargetReport{healthy, failed, none}}).Table()
	for _, want := range []string{
		"| target | sent | ok | failed (by kind) | p50 | p99 | max |\n|---|---|---|---|---|---|---|\n",
		"| t | 200 of 200 intended (+5 before) | 200 | 0 |",
		"| 199 | 1 (timeout 1) |",
		"| t | 40, no 2xx (403 40) | 0 |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if got := strings.Count(table, "\n"); got != 5 {
		t.Errorf("table has %d lines, want 5:\n%s", got, table)
	}
}

// (f) Bearer tokens (inline and from a file) and client certificates (data and files) reach
// the server, on new and on keep-alive connections.
func TestAuthentication(t *testing.T) {
	var seen sync.Map
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		id := ""
		if h := r.Header.Get("Authorization"); h != "" {
			id = "token " + strings.TrimPrefix(h, "Bearer ")
		} else if len(r.TLS.PeerCertificates) > 0 {
			id = "cert " + r.TLS.PeerCertificates[0].Subject.CommonName
		}
		seen.Store(id, true)
		if id == "token wrong" || id == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ok(w, r)
	})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	token := s.config()
	token.BearerToken = "sa-token"
	tokenFile := s.config()
	tokenFile.BearerTokenFile = write("token", []byte("file-token\n"))
	wrong := s.config()
	wrong.BearerToken = "wrong"
	certData := s.config()
	certData.CertData, certData.KeyData = clientCert(t, "alice")
	certFiles := s.config()
	cert, key := clientCert(t, "system:node:node1")
	certFiles.CertFile, certFiles.KeyFile = write("cert.pem", cert), write("key.pem", key)
	anonymous := s.config()

	p := start(t, Options{Rate: 10, KeepAliveRate: 10},
		Target{Name: "token", Config: token, Path: "/api"},
		Target{Name: "token file", Config: tokenFile, Path: "/api"},
		Target{Name: "cert data", Config: certData, Path: "/api"},
		Target{Name: "cert files", Config: certFiles, Path: "/api/v1/nodes/node1"},
		KeepAlive(Target{Name: "token", Config: token, Path: "/api"}),
		KeepAlive(Target{Name: "cert files", Config: certFiles, Path: "/api"}),
		Target{Name: "wrong token", Config: wrong, Path: "/api"},
		Target{Name: "anonymous", Config: anonymous, Path: "/api"})
	time.Sleep(500 * time.Millisecond)
	rep := p.Stop()
	t.Logf("\n%s", rep)

	for _, id := range []string{"token sa-token", "token file-token", "cert alice", "cert system:node:node1", "token wrong", ""} {
		if _, found := seen.Load(id); !found {
			t.Errorf("the server never saw identity %q", id)
		}
	}
	for _, r := range rep.Targets {
		bad := r.Name == "wrong token" || r.Name == "anonymous"
		if bad != (r.OK == 0) || r.Failed != 0 || (bad && r.BeforeByKind["401"] != r.Sent) {
			t.Errorf("%s: %d ok, %d failed, %v before the window", r.Name, r.OK, r.Failed, r.BeforeByKind)
		}
	}
	if _, err := Start(context.Background(), Options{}, Target{Name: "dup", Config: token, Path: "/"}, Target{Name: "dup", Config: token, Path: "/"}); err == nil {
		t.Error("Start accepted two targets of one name")
	}
	broken := s.config()
	broken.CertFile, broken.KeyFile = filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem")
	if _, err := Start(context.Background(), Options{}, Target{Name: "broken", Config: broken, Path: "/"}); err == nil {
		t.Error("Start accepted a client certificate file that does not exist")
	}
}

// clientCert returns a self-signed client certificate and its key, PEM encoded.
func clientCert(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// A keep-alive target asks as client-go does: an apiserver shutting down answers a request
// on an old connection with 503 and Retry-After: 1, which client-go retries; the request
// succeeds and its latency shows the wait. A 503 without Retry-After still fails, and a
// new-connection target (a bare HTTP client) counts every 503.
func TestKeepAliveFollowsRetryAfterAsClientGo(t *testing.T) {
	t.Parallel()
	shuttingDown := func(retryAfter bool) http.HandlerFunc {
		var n atomic.Int64
		return func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 5 {
				if retryAfter {
					w.Header().Set("Retry-After", "1")
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"apiserver is shutting down","reason":"ServiceUnavailable","code":503}`))
				return
			}
			ok(w, r)
		}
	}
	withRetry, withoutRetry, bare := newServer(t, shuttingDown(true)), newServer(t, shuttingDown(false)), newServer(t, shuttingDown(true))
	p := start(t, Options{KeepAliveRate: 10},
		KeepAlive(Target{Name: "retry-after", Config: withRetry.config(), Path: "/api?limit=1"}),
		KeepAlive(Target{Name: "no retry-after", Config: withoutRetry.config(), Path: "/api"}),
		Target{Name: "new connections", Config: bare.config(), Path: "/api", Rate: 10})
	time.Sleep(2500 * time.Millisecond)
	rep := p.Stop()
	t.Logf("\n%s", rep)

	r := targetOf(t, rep, "retry-after keep-alive")
	if r.Failed != 0 || r.Max < time.Second || r.Max > 2*time.Second {
		t.Errorf("with Retry-After: %d failed (%v), slowest %s; want none failed and one request of ~1 s", r.Failed, r.ByKind, r.Max)
	}
	for _, name := range []string{"no retry-after keep-alive", "new connections"} {
		if r := targetOf(t, rep, name); r.Failed != 1 || r.ByKind["503"] != 1 {
			t.Errorf("%s: failures %v, want the one 503", name, r.ByKind)
		}
	}
}
