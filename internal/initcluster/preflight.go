package initcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/etcd"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/images"
	"github.com/selfkube/selfkube/internal/manifests"
	"github.com/selfkube/selfkube/internal/steer"
)

// Check is one preflight check. Run returns nil when the host passes.
type Check struct {
	Name string
	Run  func() error
	// Warning checks never fail init.
	Warning bool
}

// checks lists the preflight checks for this run. resuming relaxes the checks that an
// earlier run of init itself makes fail (its own ports, its own files).
func checks(d *Data, resuming bool) []Check {
	l := d.Layout
	var cs []Check
	cs = append(cs, Check{Name: "IsPrivilegedUser", Run: func() error {
		if os.Geteuid() != 0 {
			return errors.New("init writes to /etc/kubernetes and /var/lib/kubelet: run it as root")
		}
		return nil
	}})
	if !resuming {
		for _, port := range []int{config.DefaultAPIServerPort, etcd.ClientPort, etcd.PeerPort, manifests.KubeletPort, manifests.ControllerManagerPort, manifests.SchedulerPort} {
			cs = append(cs, Check{Name: fmt.Sprintf("Port-%d", port), Run: portFree(port)})
		}
		cs = append(cs, Check{Name: "StaticPodsAvailable", Run: func() error {
			for _, f := range append(slices.Clone(temporaryManifests), manifests.EtcdStaticPod) {
				if _, err := os.Stat(filepath.Join(l.ManifestsDir(), f)); err == nil {
					return fmt.Errorf("%s exists and was not written by selfkube init: is another control plane (kubeadm?) on this host? "+
						"remove it, or run `selfkube reset`", filepath.Join(l.ManifestsDir(), f))
				}
			}
			return nil
		}})
		if e := d.Cfg.Cluster.Etcd.Local; e != nil {
			cs = append(cs, Check{Name: "EtcdDataDirEmpty", Run: func() error {
				entries, err := os.ReadDir(filepath.Join(l.Root, e.DataDir))
				if err == nil && len(entries) > 0 {
					return fmt.Errorf("%s is not empty: it holds another cluster's data; "+
						"move it away or run `selfkube reset --remove-etcd-data` if it is not needed", e.DataDir)
				}
				return nil
			}})
		}
	}
	cs = append(cs,
		Check{Name: "ContainerRuntime", Run: func() error { return criReachable(d.Cfg.Node.CRISocket) }},
		Check{Name: "Kubelet", Run: kubeletInstalled},
		// A version this node has no images for (and cannot pull) is refused now, with
		// the versions it has, not after a 5-minute wait for an apiserver that never
		// starts.
		Check{Name: "Images", Run: func() error { return imagesPresent(d.Cfg) }},
		Check{Name: "Cgroups", Run: func() error {
			if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
				return errors.New("/sys/fs/cgroup is missing: the kubelet needs cgroups mounted")
			}
			return nil
		}},
		// The self-hosted apiserver's pods are Ready only through the steering agent.
		Check{Name: "APIServerSteering", Run: steer.Supported},
		Check{Name: "IPForward", Run: sysctlIs("net/ipv4/ip_forward", "1",
			"enable IP forwarding: sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d)")},
		Check{Name: "BridgeNetfilter", Run: sysctlIs("net/bridge/bridge-nf-call-iptables", "1",
			"Services need bridged traffic to pass iptables: modprobe br_netfilter; sysctl -w net.bridge.bridge-nf-call-iptables=1")},
		Check{Name: "Swap", Warning: true, Run: func() error {
			data, err := os.ReadFile("/proc/swaps")
			if err == nil && len(strings.Split(strings.TrimSpace(string(data)), "\n")) > 1 {
				return errors.New("swap is on: the kubelet runs with failSwapOn=false, but memory limits are less predictable")
			}
			return nil
		}},
	)
	return cs
}

func portFree(port int) func() error {
	return func() error {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return fmt.Errorf("port %d is in use: find the owner with `ss -ltnp sport = :%d` and stop it", port, port)
		}
		return ln.Close()
	}
}

func criReachable(socket string) error {
	u, err := url.Parse(socket)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("unix", u.Path, 2*time.Second)
	if err != nil {
		return fmt.Errorf("the container runtime at %s does not answer (%v): start it (systemctl start containerd)", socket, err)
	}
	return conn.Close()
}

func imagesPresent(cfg *config.Config) error {
	rt, err := images.Dial(cfg.Node.CRISocket)
	if err != nil {
		return err
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &cfg.Cluster
	missing, versions, err := rt.Ensure(ctx, images.Needed(c), c.ImageRepository, time.Minute)
	if err != nil {
		return err
	}
	if msg := images.Refusal(c.KubernetesVersion, missing, versions); msg != "" {
		return errors.New(msg)
	}
	return nil
}

func kubeletInstalled() error {
	if _, err := exec.LookPath("kubelet"); err != nil {
		return errors.New("no kubelet in PATH: install the kubelet and its service (deploy/systemd holds a unit)")
	}
	return nil
}

func sysctlIs(name, want, fix string) func() error {
	return func() error {
		data, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil {
			return fmt.Errorf("%s is missing: %s", strings.ReplaceAll(name, "/", "."), fix)
		}
		if got := strings.TrimSpace(string(data)); got != want {
			return fmt.Errorf("%s is %s, want %s: %s", strings.ReplaceAll(name, "/", "."), got, want, fix)
		}
		return nil
	}
}

// evaluate runs the checks and returns the failures that are not ignored, and the
// warnings (failed warning checks and ignored errors).
func evaluate(cs []Check, ignore []string) (errs, warnings []string) {
	all := slices.Contains(ignore, "all")
	for _, c := range cs {
		err := c.Run()
		if err == nil {
			continue
		}
		line := fmt.Sprintf("[%s] %v", c.Name, err)
		if c.Warning || all || slices.ContainsFunc(ignore, func(s string) bool { return strings.EqualFold(s, c.Name) }) {
			warnings = append(warnings, line)
		} else {
			errs = append(errs, line)
		}
	}
	return errs, warnings
}

func preflight(_ context.Context, d *Data) error {
	resuming := len(d.Record.Owned) > 0
	if _, err := os.Stat(d.Layout.AssetDir()); err == nil {
		resuming = true
	}
	errs, warnings := evaluate(checks(d, resuming), d.IgnorePreflightErrors)
	for _, w := range warnings {
		d.Status.Infof("warning: %s", w)
	}
	if len(errs) > 0 {
		return fmt.Errorf("the host is not ready:\n  %s\nfix these, or skip a check with --ignore-preflight-errors=<name>[,<name>] (all for every one)",
			strings.Join(errs, "\n  "))
	}
	if resuming {
		d.Status.Infof("resuming an earlier init: reusing %s", host.Layout{Root: d.Layout.Root}.AssetDir())
	}
	// A run killed in its teardown (also one reset since) may have left its fence, which
	// drops every new connection to the node's address on the API port until it is gone.
	if d.clearFence != nil {
		if err := d.clearFence(); err != nil {
			d.Status.Infof("warning: could not remove a fence an earlier, killed init may have left: %v", err)
		}
	}
	return nil
}
