// Package fence stops a server that listens on a host's own address, while another one
// listens on the wildcard address of the same port, without losing a connection.
//
// The more specific listener gets every new connection to the address while it exists.
// When it stops, an HTTP server closes its listener and, at the same moment, starts
// refusing requests on connections it accepted but has not read yet: a client
// connecting in that instant gets its connection closed without an answer. selfkube
// stops such a server in two places: the checkpointer retires a checkpoint of the apiserver
// (which listens on the node's address) under the self-hosted apiserver (on every
// address), and `selfkube init` stops the temporary apiserver in the same position.
//
// So the stop goes (Fenced): hold new connections to the address (drop TCP SYNs:
// clients retransmit them after a second), let the connections already accepted send
// their requests, stop the server, wait until its listener is gone, release. The
// retransmitted SYNs reach the server on the wildcard address. A client waits about a
// second; none fails.
package fence

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Fence holds new TCP connections to an address and port.
type Fence interface {
	// Hold drops new connections to addr until release is called.
	Hold(addr netip.AddrPort) (release func() error, err error)
	// Listening reports whether a socket listens on addr itself (not on a wildcard).
	Listening(addr netip.AddrPort) (bool, error)
}

// Timing of Fenced.
const (
	// Settle is how long the connections already accepted get to send their requests
	// once new ones are held.
	Settle = 300 * time.Millisecond
	// Timeout is how long at most Fenced waits for the listener to go.
	Timeout = 10 * time.Second
)

// Fenced runs stop, which makes the server listening on addr itself go away, behind a
// fence: new connections to addr are held, the connections already accepted get a moment
// to send their requests, stop runs, and the fence is released once nothing listens on
// addr itself any more (the clients' retransmitted SYNs then reach the server listening on
// the wildcard address). Without a fence (Hold fails) it runs stop all the same.
func Fenced(f Fence, addr netip.AddrPort, sleep func(time.Duration), log *slog.Logger, stop func() error) error {
	release, err := f.Hold(addr)
	if err != nil {
		log.Warn("stopping without holding new connections", "address", addr.String(), "err", err)
		return stop()
	}
	defer func() {
		if err := release(); err != nil {
			log.Error("releasing held connections", "address", addr.String(), "err", err)
		}
	}()
	sleep(Settle)
	if err := stop(); err != nil {
		return err
	}
	for waited := time.Duration(0); ; waited += 50 * time.Millisecond {
		listening, err := f.Listening(addr)
		if err != nil || !listening {
			return err
		}
		if waited >= Timeout {
			log.Warn("the server still listens; releasing held connections anyway", "address", addr.String())
			return nil
		}
		sleep(50 * time.Millisecond)
	}
}

// table is the nftables table of the fence (family ip or ip6), present only while a
// fence is held.
const table = "selfkube-handback"

// NFTables is a Fence in the calling process's network namespace.
type NFTables struct {
	// ProcNet is /proc/net of that namespace.
	ProcNet string
	// Table names the nftables table of the fence; empty: the checkpointer's. Each
	// holder has its own, so that clearing what a killed holder left never drops
	// another's fence.
	Table string
}

// InitTable is the table of init's fence (its teardown of the temporary apiserver).
const InitTable = "selfkube-init-handover"

func (f NFTables) table() string {
	if f.Table != "" {
		return f.Table
	}
	return table
}

// Clear removes the fence (of f's table) that a killed process left behind.
func (f NFTables) Clear() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening an nftables connection: %w", err)
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		tables, err := c.ListTablesOfFamily(fam)
		if err != nil {
			return fmt.Errorf("listing nftables tables: %w", err)
		}
		for _, t := range tables {
			if t.Name == f.table() {
				c.DelTable(t)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing a left-over fence: %w", err)
	}
	return nil
}

// Hold implements Fence.
func (f NFTables) Hold(addr netip.AddrPort) (func() error, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("opening an nftables connection (the checkpointer needs CAP_NET_ADMIN): %w", err)
	}
	family, offset := nftables.TableFamilyIPv4, uint32(16)
	if addr.Addr().Is6() {
		family, offset = nftables.TableFamilyIPv6, 24
	}
	t := &nftables.Table{Name: f.table(), Family: family}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	// Before conntrack: a dropped SYN leaves no state behind. Prerouting sees clients of
	// other hosts; output sees this host's own.
	for name, hook := range map[string]*nftables.ChainHook{"hold": nftables.ChainHookPrerouting, "hold-local": nftables.ChainHookOutput} {
		ch := c.AddChain(&nftables.Chain{
			Name: name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityRaw, Policy: &accept,
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(addr.Addr().BitLen() / 8)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(addr.Port())},
			// tcp flags & (syn|ack) == syn: a new connection
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("holding new connections to %s: %w", addr, err)
	}
	return func() error {
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("releasing new connections to %s: %w", addr, err)
		}
		return nil
	}, nil
}

// Listening implements Fence from /proc/net/tcp (tcp6).
func (f NFTables) Listening(addr netip.AddrPort) (bool, error) {
	file := "tcp"
	if addr.Addr().Is6() {
		file = "tcp6"
	}
	fh, err := os.Open(f.ProcNet + "/" + file)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	want := procNetAddr(addr)
	s := bufio.NewScanner(fh)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		// sl local_address rem_address st ...; st 0A is LISTEN
		if len(fields) > 3 && strings.EqualFold(fields[1], want) && fields[3] == "0A" {
			return true, nil
		}
	}
	return false, s.Err()
}

// procNetAddr renders addr as /proc/net/tcp does on a little-endian machine: each
// 32-bit word of the address (in network order in memory) printed with %08X, so its
// bytes reversed, then the port.
func procNetAddr(addr netip.AddrPort) string {
	b := addr.Addr().AsSlice()
	var sb strings.Builder
	for i := 0; i < len(b); i += 4 {
		sb.WriteString(strings.ToUpper(hex.EncodeToString([]byte{b[i+3], b[i+2], b[i+1], b[i]})))
	}
	return fmt.Sprintf("%s:%04X", sb.String(), addr.Port())
}
