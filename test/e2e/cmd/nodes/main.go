// Command nodes exposes the e2e node harness on the command line: simulated Kubernetes
// machines on this host, each with its own network, mounts, cgroups, containerd and kubelet.
//
//	nodes up NAME IP               create node NAME (address in 172.31.0.0/24) and boot it
//	nodes exec NAME CMD...         run CMD inside the node
//	nodes reboot|poweroff|poweron NAME
//	nodes partition|heal NAME      cut / restore the node's network
//	nodes down NAME                power off and delete the node, disk included
//	nodes list                     nodes and whether they run
//	nodes logs DIR [NAME...]       copy node logs (containerd, kubelet, holder, pods) to DIR
//	nodes cluster N KUBECONFIG     kubeadm cluster of N nodes; admin kubeconfig written to KUBECONFIG
//	nodes cleanup                  delete every node and whatever a killed run left behind
//	nodes leftovers                list what the harness left on the machine (exit 1 if any)
//
// Environment: SELFKUBE_CACHE, KUBE_VERSION, SELFKUBE_E2E_DIR (see the framework package).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

func main() {
	framework.RunAgentIfRequested()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintf(os.Stderr, "nodes: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage: nodes up NAME IP | exec NAME CMD... | reboot NAME | poweroff NAME | poweron NAME |
       partition NAME | heal NAME | down NAME | list | logs DIR [NAME...] |
       cluster N KUBECONFIG | cleanup | leftovers`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	if os.Geteuid() != 0 {
		return errors.New("nodes needs root (namespaces, cgroups, mounts): run it with sudo")
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	h, err := framework.New(framework.ConfigFromEnv(), logf)
	if err != nil {
		return err
	}
	cmd, rest := args[0], args[1:]
	nodeArg := func() (*framework.Node, error) {
		if len(rest) != 1 {
			return nil, fmt.Errorf("usage: nodes %s NAME", cmd)
		}
		return h.Node(rest[0])
	}
	switch cmd {
	case "up":
		opts := framework.UpOptions{}
		usage := errors.New("usage: nodes up NAME IP [--no-pod-network] [--selfkube PATH]")
		if len(rest) < 2 {
			return usage
		}
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		fs.BoolVar(&opts.NoPodNetwork, "no-pod-network", false, "leave /etc/cni/net.d empty (the cluster brings its pod network)")
		fs.StringVar(&opts.Selfkube, "selfkube", "", "the selfkube binary the node's kubelet unit runs `checkpointer boot` with")
		if err := fs.Parse(rest[2:]); err != nil || fs.NArg() != 0 {
			return usage
		}
		rest = rest[:2]
		n, err := h.UpWith(ctx, rest[0], rest[1], opts)
		if err != nil && n != nil {
			// Interrupted or failed half-way: leave nothing behind.
			err = errors.Join(err, n.Down())
		}
		return err
	case "exec":
		if len(rest) < 2 {
			return errors.New("usage: nodes exec NAME CMD...")
		}
		n, err := h.Node(rest[0])
		if err != nil {
			return err
		}
		c, err := n.Command(context.Background(), rest[1:]...)
		if err != nil {
			return err
		}
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
		signal.Ignore(syscall.SIGINT) // the command inside gets it
		return c.Run()
	case "reboot", "poweroff", "poweron", "partition", "heal", "down":
		n, err := nodeArg()
		if err != nil {
			return err
		}
		switch cmd {
		case "reboot":
			return n.Reboot(ctx)
		case "poweroff":
			return n.PowerOff()
		case "poweron":
			return n.PowerOn(ctx)
		case "partition":
			return n.Partition()
		case "heal":
			return n.Heal()
		}
		if err := n.Down(); err != nil {
			return err
		}
		if nodes, _ := h.Nodes(); len(nodes) == 0 {
			return h.DownAll() // the last node: the bridge goes too
		}
		return nil
	case "list":
		nodes, err := h.Nodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			state := "off"
			if n.Running() {
				state = "running"
			}
			fmt.Printf("%s\t%s\t%s\t%s\n", n.Name, n.IP, n.PodSubnet(), state)
		}
		return nil
	case "logs":
		if len(rest) < 1 {
			return errors.New("usage: nodes logs DIR [NAME...]")
		}
		if len(rest) == 1 {
			return h.CollectArtifacts(rest[0])
		}
		for _, name := range rest[1:] {
			n, err := h.Node(name)
			if err != nil {
				return err
			}
			if err := n.CollectLogs(rest[0]); err != nil {
				return err
			}
		}
		return nil
	case "cluster":
		if len(rest) != 2 {
			return errors.New("usage: nodes cluster N KUBECONFIG")
		}
		count, err := strconv.Atoi(rest[0])
		if err != nil || count < 1 || count > 9 {
			return fmt.Errorf("node count %q: use 1 to 9", rest[0])
		}
		if err := cluster(ctx, h, count, rest[1]); err != nil {
			return errors.Join(err, h.DownAll())
		}
		return nil
	case "cleanup":
		return h.Cleanup()
	case "leftovers":
		left := h.Leftovers()
		for _, l := range left {
			fmt.Println(l)
		}
		if len(left) > 0 {
			return fmt.Errorf("%d leftovers: run `nodes cleanup`", len(left))
		}
		return nil
	}
	return errors.New(usage)
}

// cluster brings up a kubeadm cluster of count nodes (node1 is the control plane) and
// copies its admin kubeconfig to kubeconfig.
func cluster(ctx context.Context, h *framework.Harness, count int, kubeconfig string) error {
	if nodes, _ := h.Nodes(); len(nodes) > 0 {
		return errors.New("nodes exist already: run `make down` first")
	}
	var nodes []*framework.Node
	var names []string
	for i := 1; i <= count; i++ {
		name := fmt.Sprintf("node%d", i)
		n, err := h.Up(ctx, name, fmt.Sprintf("172.31.0.%d", 10+i))
		if err != nil {
			return err
		}
		nodes, names = append(nodes, n), append(names, name)
	}
	c, _, err := h.KubeadmInit(ctx, nodes[0])
	if err != nil {
		return err
	}
	for _, n := range nodes[1:] {
		if _, err := c.Join(ctx, n); err != nil {
			return err
		}
	}
	cs, _, err := c.Client()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := framework.Poll(wctx, time.Second, "nodes Ready", func(ctx context.Context) error {
		return framework.NodesReady(ctx, cs, names...)
	}); err != nil {
		return err
	}
	if count == 1 {
		// A one-node cluster runs workloads on its control plane.
		patch := []byte(`{"spec":{"taints":null}}`)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, names[0], types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("removing the control-plane taint: %w", err)
		}
	}
	b, err := os.ReadFile(c.AdminKubeconfig())
	if err != nil {
		return fmt.Errorf("reading admin kubeconfig: %w", err)
	}
	if err := os.WriteFile(kubeconfig, b, 0o600); err != nil {
		return fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	fmt.Fprintf(os.Stderr, "cluster of %d node(s) is Ready\n", count)
	return nil
}
