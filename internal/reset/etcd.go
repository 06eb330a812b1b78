package reset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/manifests"
)

// ErrLastMember says this node's etcd member is the cluster's only one: it stays (and
// the cluster's state with it, unless its data directory is removed too).
var ErrLastMember = errors.New("this node runs the last etcd member")

// LeaveEtcd removes this node's member from the cluster's etcd, so that the others keep
// their quorum without it. It returns the member's name, or "" when the node runs no
// etcd member.
//
// Where two voting members or more stay, the member is stopped first (its leadership
// handed on, its static pod removed, every port it listens on closed: the process is
// gone, its requests in flight answered) and then removed: every apiserver
// lists every member, and a member removed while it still runs answers their requests
// with "raft: stopped" until it exits, an error a client would see. With one member
// staying, stopping first would cost the quorum needed to remove it: it is removed first.
func LeaveEtcd(ctx context.Context, l host.Layout, out io.Writer) (string, error) {
	manifest, err := os.ReadFile(filepath.Join(l.ManifestsDir(), manifests.EtcdStaticPod))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	name := flagValue(string(manifest), "--name=")
	if name == "" {
		return "", fmt.Errorf("etcd.yaml names no member (--name)")
	}
	c, err := etcd.Dial([]string{etcd.ClientURL("127.0.0.1")}, filepath.Join(l.PKIDir(), "etcd"))
	if err != nil {
		return name, err
	}
	defer c.Close()
	members, err := c.Members(ctx)
	if err != nil {
		return name, err
	}
	if len(members) == 1 && members[0].Name == name {
		return name, ErrLastMember
	}
	// Removed through another member: a member asked to remove itself may stop before it
	// answers ("etcdserver: server stopped"), and the removal is then unknown.
	var others []string
	voters := 0
	for _, m := range members {
		if m.Name != name && !m.Learner {
			others = append(others, m.ClientURLs...)
			if m.Name != "" {
				voters++
			}
		}
	}
	if voters >= 2 {
		stopMember(ctx, l, c, listenAddresses(string(manifest)), out)
	}
	via := c
	if len(others) > 0 {
		o, err := etcd.Dial(others, filepath.Join(l.PKIDir(), "etcd"))
		if err != nil {
			return name, err
		}
		defer o.Close()
		via = o
	}
	if _, err := via.RemoveByName(ctx, name); err != nil {
		return name, err
	}
	return name, nil
}

// listenAddresses are the host:port addresses the member's static pod listens on (its
// client and peer URLs).
func listenAddresses(manifest string) []string {
	var out []string
	for _, flag := range []string{"--listen-client-urls=", "--listen-peer-urls="} {
		for _, raw := range strings.Split(flagValue(manifest, flag), ",") {
			if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.Host != "" {
				out = append(out, u.Host)
			}
		}
	}
	if len(out) == 0 {
		out = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort))}
	}
	return out
}

// stopMember hands the local member's leadership on, removes its static pod and waits
// (up to stopWait) until every address it listens on refuses: etcd closes its client
// listeners first and its peer listener last, once its requests in flight are answered.
// What fails is said; the removal follows either way.
func stopMember(ctx context.Context, l host.Layout, c *etcd.Client, addresses []string, out io.Writer) {
	local := etcd.ClientURL("127.0.0.1")
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	to, err := c.HandOffLeadership(hctx, local)
	cancel()
	switch {
	case err != nil:
		fmt.Fprintf(out, "WARNING: this node's etcd member could not hand its leadership on (%v): the others elect a leader\n", err)
	case to != "":
		fmt.Fprintf(out, "this node's etcd member led: member %s leads now\n", to)
	}
	if err := os.Remove(filepath.Join(l.ManifestsDir(), manifests.EtcdStaticPod)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(out, "WARNING: stopping this node's etcd member: %v\n", err)
		return
	}
	start := time.Now()
	for time.Since(start) < stopWait {
		listening := false
		for _, a := range addresses {
			if conn, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				conn.Close()
				listening = true
				break
			}
		}
		if !listening {
			fmt.Fprintf(out, "stopped this node's etcd member (%.1fs)\n", time.Since(start).Seconds())
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	fmt.Fprintf(out, "WARNING: this node's etcd member still listens %s after its static pod was removed (is the kubelet running?); removing it from the cluster all the same\n", stopWait)
}

// stopWait bounds the wait for the kubelet to stop the etcd member (its grace period is
// 30 s).
const stopWait = 45 * time.Second

func flagValue(manifest, prefix string) string {
	for _, line := range strings.Split(manifest, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		if strings.HasPrefix(line, prefix) {
			return strings.Trim(strings.TrimPrefix(line, prefix), `"'`)
		}
	}
	return ""
}
