// Package e2e holds the real-node end-to-end suites (build tag e2e): clusters on simulated
// machines of this host (see package framework), with a real kubelet and containerd per
// node. Run them as root with `make e2e`; `make bench` measures the benchmark table.
package e2e
