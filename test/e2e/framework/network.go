package framework

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsName is the network namespace of node name.
func netnsName(name string) string { return netnsPrefix + name }

// DialContext connects from inside node n's network namespace, to what listens on the
// node's loopback (its api-proxy, say); it suits rest.Config.Dial. A socket stays in the
// namespace it was made in, so only the dial needs the node's namespace.
func (n *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ns, err := os.Open(filepath.Join("/run/netns", netnsName(n.Name)))
	if err != nil {
		return nil, fmt.Errorf("the network namespace of node %s (is it powered on?): %w", n.Name, err)
	}
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, in the node's namespace, dies with this goroutine
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- dialed{err: fmt.Errorf("entering the network namespace of node %s: %w", n.Name, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, address)
		ch <- dialed{c, err}
	}()
	d := <-ch
	return d.c, d.err
}

// hostVeth is the host side of node name's veth.
func hostVeth(name string) string { return vethPrefix + name }

// PodSubnet is the pod network of the node with address ip: 10.244.<last octet>.0/24. The
// host routes it to the node; the node's bridge CNI allocates from it.
func PodSubnet(ip string) string {
	p := net.ParseIP(ip).To4()
	if p == nil {
		return ""
	}
	return fmt.Sprintf("10.244.%d.0/24", p[3])
}

// validateAddress checks that ip is a usable node address on the node network.
func validateAddress(ip string) error {
	p := net.ParseIP(ip).To4()
	_, network, _ := net.ParseCIDR(fmt.Sprintf("%s/%d", BridgeIP, bridgePrefixLen))
	if p == nil || !network.Contains(p) || p[3] == 0 || p[3] == 255 || p.String() == BridgeIP {
		return fmt.Errorf("node address %q is not a host address in %s other than %s: pick e.g. 172.31.0.11", ip, network, BridgeIP)
	}
	return nil
}

// ensureBridge creates the host bridge (once) and lets the host forward between nodes.
func ensureBridge() error {
	if _, err := net.InterfaceByName(BridgeName); err != nil {
		if err := run("ip", "link", "add", BridgeName, "type", "bridge"); err != nil {
			return fmt.Errorf("creating bridge: %w", err)
		}
		if err := run("ip", "addr", "add", fmt.Sprintf("%s/%d", BridgeIP, bridgePrefixLen), "dev", BridgeName); err != nil {
			return fmt.Errorf("addressing bridge: %w", err)
		}
	}
	if err := run("ip", "link", "set", BridgeName, "up"); err != nil {
		return fmt.Errorf("bringing bridge up: %w", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enabling IP forwarding on the host: %w", err)
	}
	return nil
}

// createNetwork gives node name its network namespace with eth0 on the bridge, a default
// route via the host, the sysctls a Kubernetes node needs, and a host route to its pods.
func createNetwork(name, ip string) error {
	ns, veth := netnsName(name), hostVeth(name)
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", veth, "master", BridgeName, "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s/%d", ip, bridgePrefixLen), "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", BridgeIP},
		{"ip", "route", "replace", PodSubnet(ip), "via", ip, "dev", BridgeName},
		// /proc/sys/net shows the network namespace of the process that opens it.
		{"nsenter", "--net=" + filepath.Join("/run/netns", ns), "sh", "-c",
			"echo 1 > /proc/sys/net/ipv4/ip_forward; " +
				"f=/proc/sys/net/bridge/bridge-nf-call-iptables; [ -e $f ] && echo 1 > $f; " +
				"f=/proc/sys/net/bridge/bridge-nf-call-ip6tables; [ -e $f ] && echo 1 > $f; true"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return fmt.Errorf("setting up the network of node %s: %w", name, err)
		}
	}
	return nil
}

// deleteNetwork removes node name's veth and network namespace. The veth goes first and
// explicitly: deleting it is synchronous, while the teardown of a namespace is not, and an
// immediate boot would otherwise fail with "File exists".
func deleteNetwork(name string) error {
	if linkExists(hostVeth(name)) {
		if err := run("ip", "link", "del", hostVeth(name)); err != nil {
			return fmt.Errorf("deleting veth of node %s: %w", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/netns", netnsName(name))); err == nil {
		if err := run("ip", "netns", "del", netnsName(name)); err != nil {
			return fmt.Errorf("deleting network namespace of node %s: %w", name, err)
		}
	}
	return nil
}

// setLink brings the host side of node name's veth up or down: down cuts the node off
// every other node and the host, as pulling its cable would.
func setLink(name string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := run("ip", "link", "set", hostVeth(name), state); err != nil {
		return fmt.Errorf("setting the link of node %s %s: %w", name, state, err)
	}
	return nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// ourLinks lists host interfaces the harness created.
func ourLinks() []string {
	ifs, _ := net.Interfaces()
	var out []string
	for _, i := range ifs {
		if i.Name == BridgeName || strings.HasPrefix(i.Name, vethPrefix) {
			out = append(out, i.Name)
		}
	}
	return out
}

// ourNetns lists the network namespaces the harness created.
func ourNetns() []string {
	es, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), netnsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
