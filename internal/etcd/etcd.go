// Package etcd manages the membership of the cluster's stacked etcd: a control-plane node
// joins as a learner and is promoted once it has caught up (so a slow or failed join
// never costs the cluster its quorum), and leaves again on reset.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/util/cert"
)

// Ports of a member.
const (
	ClientPort = 2379
	PeerPort   = 2380
)

// Member is one etcd member.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
}

// Client talks to etcd with the healthcheck client certificate of a node.
type Client struct {
	c *clientv3.Client
}

// PeerURL is the peer URL of a member at address.
func PeerURL(address string) string {
	return "https://" + net.JoinHostPort(address, strconv.Itoa(PeerPort))
}

// ClientURL is the client URL of a member at address.
func ClientURL(address string) string {
	return "https://" + net.JoinHostPort(address, strconv.Itoa(ClientPort))
}

// Dial connects to endpoints with the CA and healthcheck client certificate in pkiDir
// (/etc/kubernetes/pki/etcd).
func Dial(endpoints []string, pkiDir string) (*Client, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "healthcheck-client.crt"), filepath.Join(pkiDir, "healthcheck-client.key"))
	if err != nil {
		return nil, fmt.Errorf("loading the etcd client certificate: %w", err)
	}
	pool, err := cert.NewPool(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("loading the etcd CA: %w", err)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(), // errors come back as values; etcd's own log only repeats them
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %v: %w", endpoints, err)
	}
	return &Client{c: c}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// Members lists the members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	var out []Member
	for _, m := range resp.Members {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	return out, nil
}

// AddLearner adds a learner with peerURL, unless a member with that peer URL exists
// (a re-run), and returns every member. The new member has no name until it starts.
func (c *Client) AddLearner(ctx context.Context, peerURL string) (Member, []Member, error) {
	members, err := c.Members(ctx)
	if err != nil {
		return Member{}, nil, err
	}
	for _, m := range members {
		for _, u := range m.PeerURLs {
			if u == peerURL {
				return m, members, nil
			}
		}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.c.MemberAddAsLearner(actx, []string{peerURL})
	if err != nil {
		return Member{}, nil, fmt.Errorf("adding the etcd learner %s: %w", peerURL, err)
	}
	added := Member{ID: resp.Member.ID, PeerURLs: resp.Member.PeerURLs, Learner: true}
	out := []Member{}
	for _, m := range resp.Members {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	return added, out, nil
}

// InitialCluster is the --initial-cluster of a member called self joining members (in
// which self appears without a name until it has started).
func InitialCluster(members []Member, self Member, selfName string) string {
	var parts []string
	for _, m := range members {
		name := m.Name
		if m.ID == self.ID {
			name = selfName
		}
		if name == "" {
			continue // another member added but never started: not part of the cluster yet
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Promote makes learner id a voting member, retrying while it catches up with the
// leader, until ctx ends.
func (c *Client) Promote(ctx context.Context, id uint64) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.c.MemberPromote(pctx, id)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, rpctypes.ErrGRPCMemberNotLearner) || strings.Contains(err.Error(), "not a learner"):
			return nil // promoted by an earlier run
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promoting etcd member %x: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// RemoveByName removes the member called name, if there is one and it is not the last.
func (c *Client) RemoveByName(ctx context.Context, name string) (bool, error) {
	members, err := c.Members(ctx)
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if m.Name != name {
			continue
		}
		if len(members) == 1 {
			return false, fmt.Errorf("%s is the last etcd member: removing it would delete the cluster's state", name)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.c.MemberRemove(rctx, m.ID); err != nil {
			return false, fmt.Errorf("removing etcd member %s: %w", name, err)
		}
		return true, nil
	}
	return false, nil
}

// HandOffLeadership moves etcd's leadership away from the member at endpoint when that
// member leads, so that restarting it costs the cluster no election: the leader picks the
// transferee's moment, and the other members never go without a leader for an election
// timeout. The client must be connected to endpoint alone (etcd takes the request only
// from its leader). It returns the member now leading, or "" when the member did not lead
// or is the only voting one.
func (c *Client) HandOffLeadership(ctx context.Context, endpoint string) (string, error) {
	st, err := c.c.Status(ctx, endpoint)
	if err != nil {
		return "", err
	}
	if st.Header == nil || st.Leader != st.Header.MemberId {
		return "", nil
	}
	members, err := c.Members(ctx)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, m := range members {
		if m.ID == st.Header.MemberId || m.Learner || m.Name == "" {
			continue
		}
		// etcd refuses a transferee that has not caught up; the next one may have.
		if _, err := c.c.MoveLeader(ctx, m.ID); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", m.Name, err))
			continue
		}
		return m.Name, nil
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("handing etcd's leadership on: %w", errors.Join(errs...))
	}
	return "", nil
}

// Snapshot writes a snapshot of the member the client is connected to (give Dial one
// endpoint) to path, created 0600 (written to path.part, synced, then renamed: a file at
// path is whole). It returns the keyspace revision the member had when it began (the
// snapshot holds at least that) and the file's size.
func (c *Client) Snapshot(ctx context.Context, path string) (revision, size int64, err error) {
	endpoints := c.c.Endpoints()
	if len(endpoints) != 1 {
		return 0, 0, fmt.Errorf("a snapshot is taken of one member, not of %v", endpoints)
	}
	st, err := c.c.Status(ctx, endpoints[0])
	if err != nil {
		return 0, 0, fmt.Errorf("asking etcd at %s for its status: %w", endpoints[0], err)
	}
	rc, err := c.c.Snapshot(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("asking etcd at %s for a snapshot: %w", endpoints[0], err)
	}
	defer rc.Close()
	part := path + ".part"
	// A part left by a killed run is ours to replace; a link planted there is never
	// followed (O_EXCL|O_NOFOLLOW creates a new file or fails).
	if err := os.Remove(part); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, err
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(part) // gone once renamed; left by a failure otherwise
	size, err = io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("writing the snapshot to %s: %w", part, err)
	}
	if err := os.Rename(part, path); err != nil {
		return 0, 0, err
	}
	return st.Header.Revision, size, nil
}

// Voting counts members, all of which must be started (named) voting members: a learner
// or a member added but not started yet is an error that names it.
func Voting(members []Member) (int32, error) {
	var n int32
	for _, m := range members {
		switch {
		case m.Name == "":
			return n, fmt.Errorf("etcd member %x (%v) has not started", m.ID, m.PeerURLs)
		case m.Learner:
			return n, fmt.Errorf("etcd member %s is a learner, not yet voting", m.Name)
		}
		n++
	}
	return n, nil
}

// ErrNoLeader says a member answered but follows no leader: an election is under way, or
// the member is cut off from a majority.
var ErrNoLeader = errors.New("the member has no leader")

// Healthy says whether the member at endpoint (one of the client's) answers its status
// with a leader: a member of a cluster that has its quorum.
func (c *Client) Healthy(ctx context.Context, endpoint string) error {
	st, err := c.c.Status(ctx, endpoint)
	if err != nil {
		return err
	}
	if st.Leader == 0 {
		return fmt.Errorf("etcd at %s: %w", endpoint, ErrNoLeader)
	}
	return nil
}
