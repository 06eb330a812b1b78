package steer

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProbeReady asks the server of the listener in slot of p whether it is ready: a new
// TCP connection to addr (host:port, an IP host such as 127.0.0.1:6443) from the
// source port p.ProbePort(slot), which the program gives to that listener only, a TLS
// handshake with tlsCfg (its ServerName defaults to addr's host), and GET /readyz. It
// returns nil if the answer is 200, else why not. The program refuses the connection of
// an empty slot (the kernel resets it), so such a probe fails at once; timeout bounds
// the whole probe.
//
// The connection closes with a reset, leaving no TIME_WAIT on either side, so the
// slot's fixed source port is free again at once.
func ProbeReady(ctx context.Context, p *Program, slot int, addr string, tlsCfg *tls.Config, timeout time.Duration) error {
	if slot < 0 || slot >= Slots {
		return fmt.Errorf("probe: slot %d is not in 0…%d", slot, Slots-1)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	dst, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("probe: %q is not an IP address", host)
	}
	// The probe comes from the address it goes to: the program steers connections of
	// the node itself.
	src := dst.Unmap()
	if src.IsUnspecified() {
		src = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if dst.Is6() && !dst.Is4In6() {
			src = netip.IPv6Loopback()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, p.ProbePort(slot))),
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}); cerr != nil {
				return cerr
			}
			return err
		},
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("probe of slot %d: %w", slot, err)
	}
	conn := raw.(*net.TCPConn)
	defer func() {
		_ = conn.SetLinger(0)
		_ = conn.Close()
	}()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}

	cfg := &tls.Config{}
	if tlsCfg != nil {
		cfg = tlsCfg.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("probe of slot %d: %w", slot, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("probe of slot %d: %w", slot, err)
	}
	req.Header.Set("User-Agent", "selfkube-steer")
	if err := req.Write(tc); err != nil {
		return fmt.Errorf("probe of slot %d: sending GET /readyz: %w", slot, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		return fmt.Errorf("probe of slot %d: reading the answer to GET /readyz: %w", slot, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe of slot %d: GET /readyz answered %s", slot, strconv.Quote(resp.Status))
	}
	return nil
}
