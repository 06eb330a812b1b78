package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/cert"

	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/pki/pkitest"
)

// clusterInfoServer is an httptest TLS server that answers GET cluster-info with the
// response its respond function picks for the n-th request (counting from 0).
type clusterInfoServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	respond  func(n int, w http.ResponseWriter)
}

func newClusterInfoServer(t *testing.T, respond func(n int, w http.ResponseWriter)) *clusterInfoServer {
	t.Helper()
	s := &clusterInfoServer{respond: respond}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != ClusterInfoPath || r.Method != http.MethodGet || r.Header.Get("Authorization") != "" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		n := s.requests
		s.requests++
		s.mu.Unlock()
		s.respond(n, w)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *clusterInfoServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// caPEM is the PEM of the server's self-signed serving certificate, which is its own CA.
func (s *clusterInfoServer) caPEM(t *testing.T) []byte {
	t.Helper()
	out, err := cert.EncodeCertificates(s.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func serve(w http.ResponseWriter, cm *corev1.ConfigMap) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cm)
}

func serveStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Message: msg, Code: int32(code),
	})
}

// fast retries quickly and gives up after a bound no healthy test gets near.
var fast = Options{RetryInterval: time.Millisecond, Timeout: time.Minute}

func TestFetch(t *testing.T) {
	var cm *corev1.ConfigMap
	s := newClusterInfoServer(t, func(_ int, w http.ResponseWriter) { serve(w, cm) })
	cm = signed(t, clusterInfoKubeconfig(t, s.URL, s.caPEM(t)), testToken)
	pins := []string{pin(t, s.Certificate())}

	for _, endpoint := range []string{s.URL, strings.TrimPrefix(s.URL, "https://")} {
		got, err := Fetch(context.Background(), endpoint, testToken, pins, fast)
		if err != nil {
			t.Fatalf("Fetch(%s): %v", endpoint, err)
		}
		if got.Server != s.URL || string(got.CAData) != string(s.caPEM(t)) || len(got.CACerts) != 1 || !got.CACerts[0].Equal(s.Certificate()) {
			t.Fatalf("Fetch(%s) = %+v", endpoint, got)
		}
	}
	if n := s.count(); n != 4 {
		t.Fatalf("server saw %d requests, want 2 per Fetch (unverified, then verified)", n)
	}
}

func TestFetchWaitsForTheSigner(t *testing.T) {
	var kc string
	s := newClusterInfoServer(t, func(n int, w http.ResponseWriter) {
		switch {
		case n == 0:
			serveStatus(w, http.StatusNotFound, `configmaps "cluster-info" not found`)
		case n == 1:
			serveStatus(w, http.StatusForbidden, `User "system:anonymous" cannot get resource "configmaps"`)
		case n < 4:
			serve(w, signed(t, kc)) // published, not signed yet
		default:
			serve(w, signed(t, kc, testToken))
		}
	})
	kc = clusterInfoKubeconfig(t, s.URL, s.caPEM(t))
	var progress []string
	opts := fast
	opts.Progress = func(format string, args ...any) { progress = append(progress, fmt.Sprintf(format, args...)) }

	if _, err := Fetch(context.Background(), s.URL, testToken, []string{pin(t, s.Certificate())}, opts); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(progress) != 4 {
		t.Fatalf("progress = %q, want one line per retry (4)", progress)
	}
	for i, want := range []string{"cluster-info not found", "anonymous access to cluster-info denied", "not signed", "not signed"} {
		if !strings.Contains(progress[i], want) {
			t.Fatalf("progress[%d] = %q, want it to mention %q", i, progress[i], want)
		}
	}
}

func TestFetchErrors(t *testing.T) {
	_, otherPEM := pkitest.NewCA(t)
	other, _ := pkitest.NewCA(t)

	tests := []struct {
		name string
		// respond answers the n-th request; url and ca are the server's.
		respond  func(n int, w http.ResponseWriter, url string, ca []byte)
		pins     func(s *clusterInfoServer) []string
		timeout  time.Duration
		wantErrs []error
		wantText []string
		// wantRequests is how many requests the server must have seen; -1 means any.
		wantRequests int
	}{
		{
			name: "never signed: times out with the last error",
			respond: func(_ int, w http.ResponseWriter, url string, ca []byte) {
				serve(w, signed(t, clusterInfoKubeconfig(t, url, ca)))
			},
			timeout:      50 * time.Millisecond,
			wantErrs:     []error{ErrTimeout, ErrNoSignature},
			wantText:     []string{"create a new token"},
			wantRequests: -1,
		},
		{
			name: "wrong secret is not retried",
			respond: func(_ int, w http.ResponseWriter, url string, ca []byte) {
				serve(w, signed(t, clusterInfoKubeconfig(t, url, ca), bootstrap.Token{ID: testToken.ID, Secret: "ffffffffffffffff"}))
			},
			wantErrs:     []error{ErrSignatureMismatch},
			wantRequests: 1,
		},
		{
			name: "pin does not match the CA",
			respond: func(_ int, w http.ResponseWriter, url string, ca []byte) {
				serve(w, signed(t, clusterInfoKubeconfig(t, url, ca), testToken))
			},
			pins:         func(*clusterInfoServer) []string { return []string{pin(t, other)} },
			wantErrs:     []error{ErrCAHashMismatch},
			wantRequests: 1,
		},
		{
			name: "cluster-info names a CA the server's certificate is not from",
			respond: func(_ int, w http.ResponseWriter, url string, _ []byte) {
				serve(w, signed(t, clusterInfoKubeconfig(t, url, otherPEM), testToken))
			},
			pins: func(*clusterInfoServer) []string {
				c, _ := cert.ParseCertsPEM(otherPEM)
				return []string{pin(t, c[0])}
			},
			wantErrs:     []error{ErrTLSVerification},
			wantRequests: 1, // the verified handshake fails before any request
		},
		{
			name: "second answer differs from the first",
			respond: func(n int, w http.ResponseWriter, url string, ca []byte) {
				server := url
				if n > 0 {
					server = "https://10.6.6.6:6443"
				}
				serve(w, signed(t, clusterInfoKubeconfig(t, server, ca), testToken))
			},
			wantErrs:     []error{ErrClusterInfoChanged},
			wantRequests: 2,
		},
		{
			name: "anonymous access stays denied",
			respond: func(_ int, w http.ResponseWriter, _ string, _ []byte) {
				serveStatus(w, http.StatusForbidden, `User "system:anonymous" cannot get resource "configmaps"`)
			},
			timeout:      50 * time.Millisecond,
			wantErrs:     []error{ErrTimeout, ErrAccessDenied},
			wantText:     []string{`403 Forbidden (User "system:anonymous" cannot get resource "configmaps")`},
			wantRequests: -1,
		},
		{
			name: "not a Kubernetes API server",
			respond: func(_ int, w http.ResponseWriter, _ string, _ []byte) {
				_, _ = w.Write([]byte("<html>hello</html>"))
			},
			timeout:      50 * time.Millisecond,
			wantErrs:     []error{ErrTimeout, ErrUnexpectedResponse},
			wantRequests: -1,
		},
		{
			name:         "malformed pin: no request at all",
			respond:      func(int, http.ResponseWriter, string, []byte) {},
			pins:         func(*clusterInfoServer) []string { return []string{"sha256:xyz"} },
			wantErrs:     []error{ErrMalformedPin},
			wantRequests: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s *clusterInfoServer
			s = newClusterInfoServer(t, func(n int, w http.ResponseWriter) { tt.respond(n, w, s.URL, s.caPEM(t)) })
			pins := []string{pin(t, s.Certificate())}
			if tt.pins != nil {
				pins = tt.pins(s)
			}
			opts := fast
			if tt.timeout != 0 {
				opts.Timeout = tt.timeout
			}
			_, err := Fetch(context.Background(), s.URL, testToken, pins, opts)
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Fatalf("Fetch error = %v, want one wrapping %q", err, want)
				}
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Fetch error = %q, want it to contain %q", err, want)
				}
			}
			if tt.wantRequests >= 0 && s.count() != tt.wantRequests {
				t.Fatalf("server saw %d requests, want %d", s.count(), tt.wantRequests)
			}
		})
	}
}

func TestFetchUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, caPEM := pkitest.NewCA(t)
	ca, _ := cert.ParseCertsPEM(caPEM)

	opts := fast
	opts.Timeout = 50 * time.Millisecond
	_, err = Fetch(context.Background(), addr, testToken, []string{pin(t, ca[0])}, opts)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Fetch error = %v, want ErrUnreachable after ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "firewall") {
		t.Fatalf("Fetch error = %q, want the address and advice", err)
	}
}

func TestFetchCancelled(t *testing.T) {
	s := newClusterInfoServer(t, func(_ int, w http.ResponseWriter) {
		serveStatus(w, http.StatusNotFound, "not found")
	})
	ctx, cancel := context.WithCancel(context.Background())
	opts := fast
	opts.Progress = func(string, ...any) { cancel() }
	_, err := Fetch(ctx, s.URL, testToken, []string{pin(t, s.Certificate())}, opts)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrClusterInfoNotFound) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Fetch error = %v, want context.Canceled with the last error, not a timeout", err)
	}
}

func TestFetchUnsafeSkipCAVerification(t *testing.T) {
	var cm *corev1.ConfigMap
	s := newClusterInfoServer(t, func(_ int, w http.ResponseWriter) { serve(w, cm) })
	cm = signed(t, clusterInfoKubeconfig(t, s.URL, s.caPEM(t)), testToken)
	got, err := Fetch(context.Background(), s.URL, testToken, nil, Options{UnsafeSkipCAVerification: true, RetryInterval: time.Millisecond, Timeout: time.Minute})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got.Server != s.URL {
		t.Fatalf("Fetch = %+v", got)
	}
	// Without the option and without pins: refused before any request.
	before := s.count()
	if _, err := Fetch(context.Background(), s.URL, testToken, nil, fast); !errors.Is(err, ErrNoPins) || s.count() != before {
		t.Fatalf("Fetch without pins: error = %v after %d requests, want ErrNoPins and none", err, s.count()-before)
	}
}
