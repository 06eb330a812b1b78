package kubelet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitHealthy(t *testing.T) {
	var calls atomic.Int32
	starting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer starting.Close()
	if err := WaitHealthy(context.Background(), starting.URL, 5*time.Second); err != nil || calls.Load() != 3 {
		t.Errorf("a kubelet healthy at the third ask: %v after %d asks", err, calls.Load())
	}

	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer broken.Close()
	start := time.Now()
	err := WaitHealthy(context.Background(), broken.URL, 700*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "journalctl -u kubelet") {
		t.Errorf("a kubelet never healthy: %v (want the last status and where to look)", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("gave up after %s, the timeout was 700ms", took)
	}
}
