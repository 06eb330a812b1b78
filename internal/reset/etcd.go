package reset

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
func LeaveEtcd(ctx context.Context, l host.Layout) (string, error) {
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
	for _, m := range members {
		if m.Name != name && !m.Learner {
			others = append(others, m.ClientURLs...)
		}
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

func flagValue(manifest, prefix string) string {
	for _, line := range strings.Split(manifest, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		if strings.HasPrefix(line, prefix) {
			return strings.Trim(strings.TrimPrefix(line, prefix), `"'`)
		}
	}
	return ""
}
