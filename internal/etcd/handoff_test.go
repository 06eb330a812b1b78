package etcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// freeURLs returns n loopback URLs on ports free now.
func freeURLs(t *testing.T, n int) []url.URL {
	t.Helper()
	var out []url.URL
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse("http://" + l.Addr().String())
		out = append(out, *u)
		l.Close()
	}
	return out
}

// startThree runs a three-member etcd on loopback until the test ends, and returns each
// member's client URL and a client connected to that member alone.
func startThree(t *testing.T) ([]string, []*Client) {
	t.Helper()
	peers, clients := freeURLs(t, 3), freeURLs(t, 3)
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i].String()))
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		etcds  = make([]*embed.Etcd, 3)
		points []string
		conns  []*Client
	)
	for i := range 3 {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir, cfg.InitialClusterToken = fmt.Sprintf("m%d", i), t.TempDir(), "handoff"
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peers[i]}, []url.URL{peers[i]}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clients[i]}, []url.URL{clients[i]}
		cfg.InitialCluster = strings.Join(initial, ",")
		wg.Add(1)
		go func() { // the members wait for each other: started together
			defer wg.Done()
			e, err := embed.StartEtcd(cfg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			etcds[i] = e
		}()
	}
	wg.Wait()
	for _, e := range etcds {
		if e != nil {
			t.Cleanup(e.Close)
		}
	}
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for i, e := range etcds {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			t.Fatal("embedded etcd not ready")
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{clients[i].String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		points, conns = append(points, clients[i].String()), append(conns, &Client{c: c})
	}
	return points, conns
}

// leaderOf says which member (by index) leads, as member i sees it.
func leaderOf(t *testing.T, ctx context.Context, points []string, conns []*Client, i int) int {
	t.Helper()
	st, err := conns[i].c.Status(ctx, points[i])
	if err != nil {
		t.Fatal(err)
	}
	for j := range points {
		sj, err := conns[j].c.Status(ctx, points[j])
		if err != nil {
			t.Fatal(err)
		}
		if sj.Header.MemberId == st.Leader {
			return j
		}
	}
	return -1
}

// A leader about to restart hands its leadership to another member, which every member
// then follows; a follower asked changes nothing.
func TestHandOffLeadership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	points, conns := startThree(t)
	lead := leaderOf(t, ctx, points, conns, 0)
	if lead < 0 {
		t.Fatal("no leader")
	}
	follower := (lead + 1) % 3
	if to, err := conns[follower].HandOffLeadership(ctx, points[follower]); err != nil || to != "" {
		t.Fatalf("a follower's hand-off: %q, %v; want nothing done", to, err)
	}
	if now := leaderOf(t, ctx, points, conns, follower); now != lead {
		t.Fatalf("a follower's hand-off moved the leadership from m%d to m%d", lead, now)
	}
	to, err := conns[lead].HandOffLeadership(ctx, points[lead])
	if err != nil {
		t.Fatal(err)
	}
	if to == "" || to == fmt.Sprintf("m%d", lead) {
		t.Fatalf("the leader m%d handed its leadership to %q", lead, to)
	}
	for i := range 3 { // the followers learn of the new leader from its first heartbeat
		now := -1
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && fmt.Sprintf("m%d", now) != to; time.Sleep(50 * time.Millisecond) {
			now = leaderOf(t, ctx, points, conns, i)
		}
		if fmt.Sprintf("m%d", now) != to {
			t.Errorf("member m%d follows m%d, want %s", i, now, to)
		}
	}
}
