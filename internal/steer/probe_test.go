package steer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testPKI is a CA and a serving certificate for 127.0.0.1 it signed.
type testPKI struct {
	caFile string
	roots  *x509.CertPool
	server tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "steer test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{
		caFile: filepath.Join(t.TempDir(), "ca.crt"),
		roots:  x509.NewCertPool(),
		server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
	p.roots.AddCert(ca)
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsServer is an HTTPS server on one listener of a shared port, like an apiserver:
// /readyz answers its status, /name its name.
type tlsServer struct {
	name   string
	fd     int
	inode  uint64
	status atomic.Int32
	ln     *net.TCPListener
	srv    *http.Server
}

// tlsGroup is HTTPS servers sharing one port on 127.0.0.1 with SO_REUSEPORT.
type tlsGroup struct {
	pki     *testPKI
	port    int
	servers []*tlsServer
}

func newTLSGroup(t *testing.T, pki *testPKI) *tlsGroup { return &tlsGroup{pki: pki} }

// add starts a server whose /readyz answers status.
func (g *tlsGroup) add(t *testing.T, name string, status int) *tlsServer {
	t.Helper()
	l, err := reusePort(false).Listen(context.Background(), "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)))
	if err != nil {
		t.Fatal(err)
	}
	g.port = l.Addr().(*net.TCPAddr).Port
	s := &tlsServer{name: name, ln: l.(*net.TCPListener)}
	s.fd = rawFD(t, s.ln)
	s.inode = inodeOf(t, s.fd)
	s.status.Store(int32(status))
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		code := int(s.status.Load())
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	})
	mux.HandleFunc("/name", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
	s.srv = &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{g.pki.server}}))
	t.Cleanup(func() { s.srv.Close() })
	g.servers = append(g.servers, s)
	return s
}

// names makes n requests, each on a new connection, and counts which server answered;
// a failed request counts as "error: …".
func (g *tlsGroup) names(t *testing.T, n int) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: g.pki.roots},
	}}
	seen := map[string]int{}
	for range n {
		resp, err := c.Get("https://127.0.0.1:" + strconv.Itoa(g.port) + "/name")
		if err != nil {
			seen["error: "+err.Error()]++
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			seen["error: "+err.Error()]++
			continue
		}
		seen[string(b)]++
	}
	return seen
}

// safeProbeBase returns a probe base n·100 below the node's ephemeral ports, so that no
// other connection of the tests gets a probe port as its source port.
func safeProbeBase(t *testing.T, n int) uint16 {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	var lo int
	if _, err := fmt.Sscan(string(b), &lo); err != nil {
		t.Fatal(err)
	}
	base := lo - 100*(n+1)
	if base < 1024 {
		t.Skipf("the ephemeral ports start at %d: no room for probe ports below them", lo)
	}
	if ports, err := ephemeralProbePorts("/proc", uint16(base)); err != nil || len(ports) > 0 {
		t.Fatalf("probe base %d: ephemeral %v, %v", base, ports, err)
	}
	return uint16(base)
}

// loadAt loads the program with probe ports at base.
func loadAt(t *testing.T, base uint16) *Program {
	t.Helper()
	p, err := Load(base)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("loading eBPF needs root: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestProbeReachesTheServerOfItsSlot(t *testing.T) {
	p := loadAt(t, safeProbeBase(t, 0))
	pki := newTestPKI(t)
	g := newTLSGroup(t, pki)
	ok := g.add(t, "ok", http.StatusOK)
	starting := g.add(t, "starting", http.StatusServiceUnavailable)
	if err := p.Attach(ok.fd); err != nil {
		t.Fatal(err)
	}
	for slot, s := range g.servers {
		if err := p.SetSlot(slot, s.fd); err != nil {
			t.Fatal(err)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(g.port)
	cfg := &tls.Config{RootCAs: pki.roots}
	ctx := context.Background()

	// Again and again, through the same two source ports: each probe reaches its slot's
	// server (the other would answer otherwise), and the port is free again at once.
	for i := range 20 {
		if err := ProbeReady(ctx, p, 0, addr, cfg, time.Second); err != nil {
			t.Fatalf("probe %d of slot 0 (200): %v", i, err)
		}
		err := ProbeReady(ctx, p, 1, addr, cfg, time.Second)
		if err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("probe %d of slot 1 (503): %v, want a 503", i, err)
		}
	}
	starting.status.Store(http.StatusOK)
	ok.status.Store(http.StatusInternalServerError)
	if err := ProbeReady(ctx, p, 1, addr, cfg, time.Second); err != nil {
		t.Errorf("slot 1, now 200: %v", err)
	}
	if err := ProbeReady(ctx, p, 0, addr, cfg, time.Second); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("slot 0, now 500: %v", err)
	}

	// An empty slot: the program refuses the connection (this kernel answers the SYN
	// with a reset), or at worst the probe fails at its timeout; never another server.
	start := time.Now()
	err := ProbeReady(ctx, p, 2, addr, cfg, 300*time.Millisecond)
	if took := time.Since(start); err == nil || took > time.Second {
		t.Errorf("probe of the empty slot 2: %v after %s, want a failure within 300ms", err, took)
	} else {
		t.Logf("probe of the empty slot 2 failed after %s: %v", took.Round(time.Millisecond), err)
	}

	// The probe verifies the server against the given CA, as the given name.
	if err := ProbeReady(ctx, p, 1, addr, &tls.Config{}, time.Second); err == nil {
		t.Error("a probe that does not trust the CA passed")
	}
	if err := ProbeReady(ctx, p, 1, addr, &tls.Config{RootCAs: pki.roots, ServerName: "example.com"}, time.Second); err == nil {
		t.Error("a probe of a name the certificate does not have passed")
	}
	for _, bad := range []struct {
		slot int
		addr string
	}{{-1, addr}, {Slots, addr}, {0, "localhost:" + strconv.Itoa(g.port)}, {0, "127.0.0.1"}} {
		if err := ProbeReady(ctx, p, bad.slot, bad.addr, cfg, time.Second); err == nil {
			t.Errorf("probe of slot %d at %q passed", bad.slot, bad.addr)
		}
	}
	// A cancelled context ends the probe.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ProbeReady(cctx, p, 1, addr, cfg, time.Second); err == nil {
		t.Error("a probe with a cancelled context passed")
	}
}
