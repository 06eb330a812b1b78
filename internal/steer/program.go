// Package steer decides which of the listeners that share a port (SO_REUSEPORT) gets a
// new connection: only those whose server is ready, so that an apiserver that is still
// starting, or already stopping, receives no new client. See docs/no-api-gap.md.
//
// The kernel asks an SK_REUSEPORT eBPF program, attached to the port's reuseport group,
// for each new connection:
//
//	from 127.0.0.0/8, source port in             → the listener in that slot
//	[ProbeBase, ProbeBase+Slots)                  (none there: the connection is dropped)
//	destination [::1]                           → the kernel's own choice: that is where a
//	                                              kube-apiserver's loopback client reaches
//	                                              itself (its own token and certificate, which
//	                                              no other apiserver accepts); steered to the
//	                                              ready one, a starting apiserver could never
//	                                              finish its start
//	otherwise, n > 0 slots are ready            → the listener of ready slot hash % n, or
//	                                              of the next ready slot that still has one
//	otherwise                                   → the kernel's own choice, as without us
//
// The probe slots let a node agent ask one particular listener's server for /readyz
// through the shared port.
package steer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Slots is how many listeners one port can hold.
const Slots = 16

// settings is the value of the settings array's only element.
type settings struct {
	// Ready is how many slots the ready array holds, at indices 0…Ready-1.
	Ready uint32
	// ProbeBase is the first source port of the probe slots.
	ProbeBase uint32
	// Slots is the number of probe slots.
	Slots uint32
}

// Program is the steering program and its maps, loaded into the kernel.
type Program struct {
	probeBase uint16
	sockets   *ebpf.Map // REUSEPORT_SOCKARRAY: every listener, by slot (a socket can be in one such map only)
	ready     *ebpf.Map // ARRAY of slots: the ready listeners, at 0…n-1
	settings  *ebpf.Map // ARRAY of one settings
	prog      *ebpf.Program
}

// sk_reuseport_md fields the program reads.
const (
	offEthProtocol = 20 // __u32 eth_protocol (a big-endian 16-bit value)
	offHash        = 32 // __u32 hash
	skPass         = 1
	skDrop         = 0
)

// The IPv6 header's destination address, for bpf_skb_load_bytes_relative.
const (
	ethPIPv4       = 0x0800
	ethPIPv6       = 0x86DD
	offIPv4Src     = 12
	offIPv6Dst     = 24
	hdrStartNet    = 1 // BPF_HDR_START_NET
	stackIPv6Dst   = -40
	stackIPv6DstLo = stackIPv6Dst + 8
)

// loopbackLow is the second half of ::1 (bytes 8…15: 0 0 0 0 0 0 0 1) as the program
// loads it from memory, in this machine's byte order.
var loopbackLow = int64(binary.NativeEndian.Uint64([]byte{0, 0, 0, 0, 0, 0, 0, 1}))

// Load loads the program; connections from source ports probeBase … probeBase+Slots-1
// are probes. It needs CAP_BPF (or root).
func Load(probeBase uint16) (*Program, error) {
	if int(probeBase)+Slots > 65535 || probeBase == 0 {
		return nil, fmt.Errorf("probe ports %d…%d are not valid ports", probeBase, int(probeBase)+Slots-1)
	}
	p := &Program{probeBase: probeBase}
	var err error
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.sockets, err = ebpf.NewMap(&ebpf.MapSpec{Name: "steer_sockets", Type: ebpf.ReusePortSockArray, KeySize: 4, ValueSize: 8, MaxEntries: Slots}); err != nil {
		return nil, fmt.Errorf("creating the map of listeners: %w", err)
	}
	if p.ready, err = ebpf.NewMap(&ebpf.MapSpec{Name: "steer_ready", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: Slots}); err != nil {
		return nil, fmt.Errorf("creating the map of ready slots: %w", err)
	}
	if p.settings, err = ebpf.NewMap(&ebpf.MapSpec{Name: "steer_settings", Type: ebpf.Array, KeySize: 4, ValueSize: 12, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("creating the settings map: %w", err)
	}
	if err = p.settings.Put(uint32(0), settings{ProbeBase: uint32(probeBase), Slots: Slots}); err != nil {
		return nil, fmt.Errorf("writing the settings: %w", err)
	}
	if p.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "steer", Type: ebpf.SkReuseport, License: "GPL", Instructions: p.instructions(),
	}); err != nil {
		return nil, fmt.Errorf("loading the steering program: %w", err)
	}
	return p, nil
}

// instructions is the program (R6 ctx, R7 source port then n, R8 settings, R9 index of
// the ready array to try).
func (p *Program) instructions() asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		// R8 = &settings[0]; none (cannot happen for an array): the kernel's choice.
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, p.settings.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R8, asm.R0),
		// A probe comes from the node itself: IPv4 from 127.0.0.0/8, which the kernel
		// never accepts from outside. Any other source port is no probe.
		asm.LoadMem(asm.R2, asm.R6, offEthProtocol, asm.Word),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.JNE.Imm(asm.R2, ethPIPv4, "spread"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, offIPv4Src),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 1),
		asm.Mov.Imm(asm.R5, hdrStartNet),
		asm.FnSkbLoadBytesRelative.Call(),
		asm.JNE.Imm(asm.R0, 0, "spread"),
		asm.LoadMem(asm.R2, asm.RFP, -8, asm.Byte),
		asm.JNE.Imm(asm.R2, 127, "spread"),
		// R7 = the TCP source port (the first two bytes of the transport header); a
		// connection without one (a request migrating from a closed listener) is no probe.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 2),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "spread"),
		asm.LoadMem(asm.R7, asm.RFP, -8, asm.Half),
		asm.HostTo(asm.BE, asm.R7, asm.Half),
		// A probe: R7 = slot.
		asm.LoadMem(asm.R2, asm.R8, 4, asm.Word),
		asm.JLT.Reg(asm.R7, asm.R2, "spread"),
		asm.Sub.Reg(asm.R7, asm.R2),
		asm.LoadMem(asm.R2, asm.R8, 8, asm.Word),
		asm.JGE.Reg(asm.R7, asm.R2, "spread"),
		asm.StoreMem(asm.RFP, -12, asm.R7, asm.Word),
	}
	insns = append(insns, p.selectSlotAt(-12)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Imm(asm.R0, skDrop), // the slot is empty: this probe reaches nobody
		asm.Return(),
		// A connection to [::1]: the kernel's choice (an apiserver's loopback client).
		asm.LoadMem(asm.R2, asm.R6, offEthProtocol, asm.Word).WithSymbol("spread"),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.JNE.Imm(asm.R2, ethPIPv6, "ready"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, offIPv6Dst),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackIPv6Dst),
		asm.Mov.Imm(asm.R4, 16),
		asm.Mov.Imm(asm.R5, hdrStartNet),
		asm.FnSkbLoadBytesRelative.Call(),
		asm.JNE.Imm(asm.R0, 0, "ready"),
		asm.LoadMem(asm.R2, asm.RFP, stackIPv6Dst, asm.DWord),
		asm.JNE.Imm(asm.R2, 0, "ready"),
		asm.LoadMem(asm.R2, asm.RFP, stackIPv6DstLo, asm.DWord),
		asm.LoadImm(asm.R3, loopbackLow, asm.DWord),
		asm.JEq.Reg(asm.R2, asm.R3, "pass"),
		// Any other connection: R7 = n, R9 = hash % n.
		asm.LoadMem(asm.R7, asm.R8, 0, asm.Word).WithSymbol("ready"),
		asm.JEq.Imm(asm.R7, 0, "pass"),
		asm.LoadMem(asm.R9, asm.R6, offHash, asm.Word),
		asm.Mod.Reg32(asm.R9, asm.R7),
	)
	// Try ready[R9], ready[R9+1], … (mod n), at most n of them: a ready listener that
	// closed leaves an empty socket slot until the agent notices, and the next ready one
	// takes its connections meanwhile.
	for k := 0; k < Slots; k++ {
		next := fmt.Sprintf("try%d", k+1)
		if k == Slots-1 {
			next = "pass"
		}
		insns = append(insns,
			asm.JLE.Imm(asm.R7, int32(k), "pass").WithSymbol(fmt.Sprintf("try%d", k)), // n <= k: every one tried
			asm.StoreMem(asm.RFP, -12, asm.R9, asm.Word),
			asm.LoadMapPtr(asm.R1, p.ready.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -12),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, next),
			asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
			asm.StoreMem(asm.RFP, -16, asm.R3, asm.Word),
		)
		insns = append(insns, p.selectSlotAt(-16)...)
		insns = append(insns,
			asm.JEq.Imm(asm.R0, 0, "pass"),
			// R9 = (R9 + 1) mod n
			asm.Add.Imm(asm.R9, 1),
			asm.JLT.Reg(asm.R9, asm.R7, next),
			asm.Mov.Imm(asm.R9, 0),
		)
	}
	return append(insns,
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	)
}

// selectSlotAt selects, for this connection, the listener whose slot number is stored on
// the stack at off (R0 = 0 on success; R1-R5 clobbered).
func (p *Program) selectSlotAt(off int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, p.sockets.FD()),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, off),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
	}
}

// ProbePort is the source port whose connections go to the listener in slot.
func (p *Program) ProbePort(slot int) uint16 { return p.probeBase + uint16(slot) }

// Attach attaches the program to the reuseport group of the listening socket fd (any
// listener of the group will do; a group that already has it keeps it).
func (p *Program) Attach(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, p.prog.FD()); err != nil {
		return fmt.Errorf("attaching the steering program to socket %d: %w", fd, err)
	}
	return nil
}

// ErrMultipath says a listener is an MPTCP socket, which the kernel cannot steer: its
// server must listen on plain TCP (GODEBUG=multipathtcp=0 for a Go server).
var ErrMultipath = errors.New("the listener is an MPTCP socket")

// SetSlot puts the listening socket fd in slot (fd < 0 empties the slot). A socket can be
// in one slot of one Program only.
func (p *Program) SetSlot(slot, fd int) error {
	if slot < 0 || slot >= Slots {
		return fmt.Errorf("slot %d is not in 0…%d", slot, Slots-1)
	}
	if fd < 0 {
		if err := p.sockets.Delete(uint32(slot)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	}
	if err := p.sockets.Put(uint32(slot), uint64(fd)); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("socket %d: %w (%v)", fd, ErrMultipath, err)
		}
		return fmt.Errorf("socket %d into slot %d: %w", fd, slot, err)
	}
	return nil
}

// SetReady makes the listeners of slots, in this order, those that new connections are
// spread over; none leaves the choice to the kernel.
func (p *Program) SetReady(slots []int) error {
	if len(slots) > Slots {
		return fmt.Errorf("%d ready listeners, at most %d", len(slots), Slots)
	}
	for _, slot := range slots {
		if slot < 0 || slot >= Slots {
			return fmt.Errorf("slot %d is not in 0…%d", slot, Slots-1)
		}
	}
	// Shrink n first, fill, then grow: a connection arriving meanwhile reads only
	// indices below the n it saw, each holding a slot that is or was ready.
	var s settings
	if err := p.settings.Lookup(uint32(0), &s); err != nil {
		return err
	}
	if uint32(len(slots)) < s.Ready {
		s.Ready = uint32(len(slots))
		if err := p.settings.Put(uint32(0), s); err != nil {
			return err
		}
	}
	for i, slot := range slots {
		if err := p.ready.Put(uint32(i), uint32(slot)); err != nil {
			return err
		}
	}
	s.Ready = uint32(len(slots))
	return p.settings.Put(uint32(0), s)
}

// Close unloads the program; a group it is attached to keeps it (and its maps) until the
// group's last listener closes.
func (p *Program) Close() error {
	var errs []error
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
	}
	for _, m := range []*ebpf.Map{p.sockets, p.ready, p.settings} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// Supported says why this host cannot run the agent, or nil: the kernel must load the
// program (Linux with BPF, root or CAP_BPF), and the host needs the IPv6 loopback
// address, which kube-apiserver's loopback client uses on a listener on every address
// and which the program leaves to the kernel's choice.
func Supported() error {
	p, err := Load(DefaultProbeBase)
	if err != nil {
		return fmt.Errorf("the kernel refuses the apiserver steering program (eBPF SK_REUSEPORT, Linux 5.6 or later with BPF enabled): %w", err)
	}
	if err := p.Close(); err != nil {
		return err
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	return hasIPv6Loopback(addrs)
}

func hasIPv6Loopback(addrs []net.Addr) error {
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(net.IPv6loopback) {
			return nil
		}
	}
	return errors.New("the host has no IPv6 loopback address ::1: kube-apiserver would reach itself through 127.0.0.1, which the apiserver steering redirects; enable IPv6 on lo (sysctl -w net.ipv6.conf.lo.disable_ipv6=0)")
}
