package kubelet

import (
	"os"
	"strings"
	"testing"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
)

func testConfig() *config.Config {
	c := &config.Config{}
	c.Cluster.Networking.ServiceSubnet = "10.100.0.0/16"
	c.Node.Labels = map[string]string{"zone": "a", "disk": "ssd"}
	config.Default(c, config.Host{Hostname: "node1", DefaultAddress: "192.0.2.10"})
	return c
}

func TestWrite(t *testing.T) {
	layout := host.Layout{Root: t.TempDir()}
	cfg := testConfig()
	if _, err := Write(cfg, layout); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(layout.KubeletConfig())
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeletv1beta1.KubeletConfiguration
	strict, err := kjson.UnmarshalStrict(js, &kc)
	if err != nil || len(strict) > 0 {
		t.Fatalf("written kubelet config does not decode strictly: %v %v", err, strict)
	}
	if kc.Kind != "KubeletConfiguration" || kc.ClusterDNS[0] != "10.100.0.10" || kc.CgroupDriver != "cgroupfs" ||
		kc.ContainerRuntimeEndpoint != config.DefaultCRISocket || *kc.FailCgroupV1 || *kc.Authentication.Anonymous.Enabled {
		t.Errorf("kubelet config: %s", data)
	}
	env, _ := os.ReadFile(layout.KubeletFlagsEnv())
	want := `KUBELET_KUBEADM_ARGS="--hostname-override=node1 --node-ip=192.0.2.10 --node-labels=disk=ssd,zone=a"` + "\n"
	if string(env) != want {
		t.Errorf("flags env = %q, want %q", env, want)
	}
	report, err := Write(cfg, layout)
	if err != nil || !strings.HasPrefix(report[0], string(host.Unchanged)) || !strings.HasPrefix(report[1], string(host.Unchanged)) {
		t.Errorf("second write should reuse both files: %v %v", report, err)
	}
}
