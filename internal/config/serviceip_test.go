package config

import (
	"net/netip"
	"testing"
)

func TestServiceIP(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		index  int
		want   string
	}{
		{"10.96.0.0/12", 1, "10.96.0.1"},
		{"10.96.0.0/12", 10, "10.96.0.10"},
		{"172.20.0.0/16", 10, "172.20.0.10"},
		{"10.0.0.250/24", 10, "10.0.0.10"},
		{"fd00::/112", 10, "fd00::a"},
		{"10.0.0.0/28", 15, "10.0.0.15"},
	} {
		n := Networking{ServiceSubnet: tc.subnet}
		got, err := n.ServiceIP(tc.index)
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("ServiceIP(%s, %d) = %v, %v; want %s", tc.subnet, tc.index, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		subnet string
		index  int
	}{{"10.0.0.0/28", 16}, {"10.0.0.0/28", -1}, {"not-a-cidr", 1}} {
		n := Networking{ServiceSubnet: tc.subnet}
		if got, err := n.ServiceIP(tc.index); err == nil {
			t.Errorf("ServiceIP(%s, %d) = %v, want an error", tc.subnet, tc.index, got)
		}
	}
}
