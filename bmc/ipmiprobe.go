package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// IPMIInfo is what a BMC answers to Get Channel Authentication
// Capabilities, asked without a session.
type IPMIInfo struct {
	Channel   int
	IPMI20    bool // the BMC speaks IPMI v2.0 (RMCP+, lanplus)
	AuthTypes []string
	// AnonymousLogin and NullUsers say whether the BMC lets someone in
	// without a user name or password: worth a warning.
	AnonymousLogin bool
	NullUsers      bool
	OEMID          uint32
}

// authCapsRequest is an RMCP packet carrying an IPMI v1.5 session-less
// Get Channel Authentication Capabilities request (NetFn App, command
// 0x38) for the current channel at Administrator level, asking for the
// IPMI v2.0 extended answer.
var authCapsRequest = func() []byte {
	msg := []byte{0x20, 0x06 << 2, 0, 0x81, 0x00, 0x38, 0x8e, 0x04, 0}
	msg[2] = checksum(msg[0:2])
	msg[8] = checksum(msg[3:8])
	pkt := []byte{0x06, 0x00, 0xff, 0x07, // RMCP: version 1.0, no ACK, class IPMI
		0x00, 0, 0, 0, 0, 0, 0, 0, 0, // auth type none, sequence 0, session 0
		byte(len(msg))}
	return append(pkt, msg...)
}()

func checksum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return -s
}

// ProbeIPMI asks the BMC at addr (UDP, normally port 623) for its channel
// authentication capabilities. It needs no credentials; an answer proves an
// IPMI BMC listens there.
func ProbeIPMI(ctx context.Context, addr netip.AddrPort) (IPMIInfo, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return IPMIInfo{}, fmt.Errorf("ipmi %s: %w", addr, err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(3 * time.Second)
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 512)
	// UDP may drop a packet: ask up to three times within the deadline.
	per := time.Until(deadline) / 3
	for try := 0; try < 3; try++ {
		if _, err := c.Write(authCapsRequest); err != nil {
			return IPMIInfo{}, fmt.Errorf("ipmi %s: %w", addr, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(per))
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && time.Now().Before(deadline) {
				continue
			}
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return IPMIInfo{}, fmt.Errorf("ipmi %s: no answer: %w", addr, err)
		}
		info, err := parseAuthCapsReply(buf[:n])
		if err != nil {
			return IPMIInfo{}, fmt.Errorf("ipmi %s: %w", addr, err)
		}
		return info, nil
	}
	return IPMIInfo{}, fmt.Errorf("ipmi %s: no answer: %w", addr, context.DeadlineExceeded)
}

// parseAuthCapsReply decodes the RMCP/IPMI v1.5 reply to authCapsRequest.
func parseAuthCapsReply(b []byte) (IPMIInfo, error) {
	bad := func(why string) (IPMIInfo, error) {
		return IPMIInfo{}, fmt.Errorf("%w: not an IPMI authentication capabilities reply: %s", ErrProtocol, why)
	}
	if len(b) < 4 || b[0] != 0x06 || b[3]&0x1f != 0x07 {
		return bad("no RMCP IPMI header")
	}
	b = b[4:]
	if len(b) < 1 {
		return bad("short session header")
	}
	hdr := 9 // auth type, sequence (4), session id (4)
	if b[0] != 0 {
		hdr += 16 // an authentication code follows
	}
	if len(b) < hdr+1 {
		return bad("short session header")
	}
	n := int(b[hdr])
	msg := b[hdr+1:]
	if n > len(msg) {
		return bad("message shorter than its length")
	}
	msg = msg[:n]
	// rqSA, netFn/rqLUN, chk, rsSA, rqSeq/rsLUN, cmd, completion code, data..., chk
	if len(msg) < 8 {
		return bad("short message")
	}
	if checksum(msg[0:2]) != msg[2] || checksum(msg[3:len(msg)-1]) != msg[len(msg)-1] {
		return bad("checksum")
	}
	if msg[1]>>2 != 0x07 || msg[5] != 0x38 {
		return bad("unexpected NetFn or command")
	}
	if cc := msg[6]; cc != 0 {
		return IPMIInfo{}, fmt.Errorf("%w: completion code 0x%02x", ErrBMC, cc)
	}
	data := msg[7 : len(msg)-1]
	if len(data) < 8 {
		return bad("short data")
	}
	info := IPMIInfo{Channel: int(data[0])}
	auth := data[1]
	for bit, name := range map[uint]string{0: "none", 1: "md2", 2: "md5", 4: "password", 5: "oem"} {
		if auth&(1<<bit) != 0 {
			info.AuthTypes = append(info.AuthTypes, name)
		}
	}
	slices.Sort(info.AuthTypes)
	info.IPMI20 = auth&0x80 != 0 && data[3]&0x02 != 0
	info.AnonymousLogin = data[2]&0x01 != 0
	info.NullUsers = data[2]&0x02 != 0
	info.OEMID = uint32(data[4]) | uint32(data[5])<<8 | uint32(data[6])<<16
	return info, nil
}
