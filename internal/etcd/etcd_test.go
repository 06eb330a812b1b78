package etcd

import "testing"

func TestInitialCluster(t *testing.T) {
	self := Member{ID: 3, PeerURLs: []string{PeerURL("172.31.0.43")}, Learner: true}
	members := []Member{
		{ID: 1, Name: "ha1", PeerURLs: []string{PeerURL("172.31.0.41")}},
		{ID: 2, Name: "ha2", PeerURLs: []string{PeerURL("172.31.0.42")}},
		self,
		{ID: 4, PeerURLs: []string{PeerURL("172.31.0.44")}, Learner: true}, // added by a join that never started it
	}
	got := InitialCluster(members, self, "ha3")
	want := "ha1=https://172.31.0.41:2380,ha2=https://172.31.0.42:2380,ha3=https://172.31.0.43:2380"
	if got != want {
		t.Errorf("InitialCluster = %s\nwant            %s", got, want)
	}
	if u := ClientURL("fd00::1"); u != "https://[fd00::1]:2379" {
		t.Errorf("ClientURL of an IPv6 address = %s", u)
	}
}
