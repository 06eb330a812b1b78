package framework

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCgroupMounts(t *testing.T) {
	mounts := `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,xattr,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
`
	got, err := parseCgroupMounts(strings.NewReader(mounts))
	if err != nil {
		t.Fatal(err)
	}
	want := []hierarchy{
		{mount: "/sys/fs/cgroup/cpu,cpuacct", options: "cpu,cpuacct"},
		{mount: "/sys/fs/cgroup/pids", options: "pids"},
		{mount: "/sys/fs/cgroup/systemd", options: "none,name=systemd"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(hierarchy{})); diff != "" {
		t.Errorf("parseCgroupMounts mismatch (-want +got):\n%s", diff)
	}
	if !got[0].has("cpuacct") || got[0].has("cpuset") {
		t.Errorf("has(): cpu,cpuacct hierarchy reports wrong controllers")
	}
	if _, err := parseCgroupMounts(strings.NewReader("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")); err == nil {
		t.Errorf("a cgroup v2-only host must be refused")
	}
}

func TestPodSubnetAndAddress(t *testing.T) {
	for _, tt := range []struct {
		ip, subnet string
		valid      bool
	}{
		{"172.31.0.11", "10.244.11.0/24", true},
		{"172.31.0.254", "10.244.254.0/24", true},
		{"172.31.0.1", "10.244.1.0/24", false}, // the bridge
		{"172.31.0.255", "10.244.255.0/24", false},
		{"172.31.1.5", "10.244.5.0/24", false}, // outside the node network
		{"fd00::1", "", false},
	} {
		if got := PodSubnet(tt.ip); got != tt.subnet {
			t.Errorf("PodSubnet(%s) = %q, want %q", tt.ip, got, tt.subnet)
		}
		if err := validateAddress(tt.ip); (err == nil) != tt.valid {
			t.Errorf("validateAddress(%s) = %v, want valid=%v", tt.ip, err, tt.valid)
		}
	}
}
