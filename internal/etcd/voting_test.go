package etcd

import (
	"strings"
	"testing"
)

// Only a list of started, voting members passes; an unstarted member or a learner is
// named in the error.
func TestVoting(t *testing.T) {
	started := []Member{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}, {ID: 3, Name: "c"}}
	if n, err := Voting(started); n != 3 || err != nil {
		t.Errorf("three started members: %d, %v", n, err)
	}
	if _, err := Voting(append(started, Member{ID: 0xc0ffee, PeerURLs: []string{"https://10.0.0.4:2380"}})); err == nil || !strings.Contains(err.Error(), "c0ffee") {
		t.Errorf("an unstarted member: %v, want it named", err)
	}
	if _, err := Voting(append(started, Member{ID: 4, Name: "d", Learner: true})); err == nil || !strings.Contains(err.Error(), "d is a learner") {
		t.Errorf("a learner: %v, want it named", err)
	}
}
