// Package network is selfkube's built-in pod network: a DaemonSet agent in the manner of
// kind's kindnet, for nodes that share one layer-2 network (every node's InternalIP is a
// directly connected next hop of every other node).
//
// The DaemonSet runs two commands of the selfkube image:
//
//   - `selfkube network install-cni` (init container, InstallCNI): copies the CNI plugins
//     bridge, host-local, loopback and portmap from the image's /opt/cni/bin to the host's
//     /opt/cni/bin, each atomically, skipping files already identical.
//   - `selfkube network` (main container, Components and Agent, run by component.Run):
//     waits until kube-controller-manager
//     (--allocate-node-cidrs) sets spec.podCIDRs of its Node, writes the bridge conflist
//     (DesiredConflist) to the host's /etc/cni/net.d, which makes the kubelet Ready, and
//     keeps a route to every other node's pod CIDRs via that node's InternalIP
//     (DesiredRoutes, PlanRoutes).
//
// # Masquerading
//
// Pods must reach other nodes' pods with their own address, and the outside world with
// the node's. The bridge plugin's ipMasq cannot express that: it masquerades everything
// not in the node's own pod CIDR, so traffic to another node's pod would leave with the
// node's address. The conflist therefore sets ipMasq false, and the agent owns an
// nftables table `inet selfkube` whose nat postrouting chain returns for destinations in
// the cluster's pod network (--cluster-cidr, or without it the pod CIDRs of all nodes)
// and masquerades everything else sourced from this node's pod CIDRs
// (DesiredMasquerade, NFTablesMasquerade). It is written through netlink, so the image
// needs no iptables or nft binary. Service traffic is unaffected: kube-proxy DNATs before
// postrouting and does its own masquerading.
//
// # Ownership
//
// Routes the agent creates carry routing protocol number RouteProtocol (115): it lists,
// replaces and deletes only those, and refuses to overwrite a route to a pod CIDR that
// someone else created. The nftables table `inet selfkube` is the agent's alone.
// Stopping the agent leaves the conflist, routes and table in place.
//
// # Dual-stack
//
// Supported: a Node with one IPv4 and one IPv6 pod CIDR gets both ranges in host-local
// IPAM with a default route per family; routes use the peer's InternalIP of the same
// family (a peer without one is logged and skipped); masquerading covers both families.
//
// # What the DaemonSet needs
//
//	hostNetwork: true; securityContext.capabilities.add: [NET_ADMIN] on the main container
//	(routes and nftables through netlink), or privileged: true. Running as root (uid 0) in
//	both containers, to write the host directories. Tolerations: operator Exists (every
//	taint). priorityClassName: system-node-critical.
//	env NODE_NAME from fieldRef spec.nodeName.
//	init container `selfkube network install-cni`: hostPath /opt/cni/bin (DirectoryOrCreate)
//	  mounted at /host/opt/cni/bin.
//	container `selfkube network`: hostPath /etc/cni/net.d (DirectoryOrCreate) mounted at
//	  /host/etc/cni/net.d; optional --cluster-cidr=<podSubnet>.
//	RBAC: ClusterRole with nodes get, list, watch, bound to the DaemonSet's ServiceAccount.
package network
