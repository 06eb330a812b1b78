package config

import (
	"fmt"
	"math/big"
	"net/netip"
)

// ServiceIP returns the index-th address of the service subnet: index 1 is the
// "kubernetes" Service's ClusterIP, index 10 is the cluster DNS Service's.
func (n *Networking) ServiceIP(index int) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(n.ServiceSubnet)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("parsing serviceSubnet %q: %w", n.ServiceSubnet, err)
	}
	base := new(big.Int).SetBytes(prefix.Masked().Addr().AsSlice())
	ip := new(big.Int).Add(base, big.NewInt(int64(index)))
	size := new(big.Int).Lsh(big.NewInt(1), uint(prefix.Addr().BitLen()-prefix.Bits()))
	if index < 0 || big.NewInt(int64(index)).Cmp(size) >= 0 {
		return netip.Addr{}, fmt.Errorf("serviceSubnet %s has no address number %d", n.ServiceSubnet, index)
	}
	raw := ip.FillBytes(make([]byte, prefix.Addr().BitLen()/8))
	addr, _ := netip.AddrFromSlice(raw)
	return addr, nil
}

// DNSServiceIP is the ClusterIP of the kube-dns Service: the 10th address of the
// service subnet, as kubeadm chooses it.
func (n *Networking) DNSServiceIP() (netip.Addr, error) {
	return n.ServiceIP(10)
}
