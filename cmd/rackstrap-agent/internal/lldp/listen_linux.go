//go:build linux

package lldp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Listen waits on one interface for an LLDP frame from a neighbour and
// returns what it says. It needs CAP_NET_RAW (the agent runs as root). It
// returns ctx's error when nothing came before ctx ended.
func Listen(ctx context.Context, ifname string) (*inventory.LLDP, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("lldp %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(EtherType)))
	if err != nil {
		return nil, fmt.Errorf("lldp %s: packet socket: %w (the agent needs CAP_NET_RAW)", ifname, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(EtherType), Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("lldp %s: bind: %w", ifname, err)
	}
	// Let the NIC's filter pass the LLDP multicast address up.
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	copy(mreq.Address[:], Multicast)
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return nil, fmt.Errorf("lldp %s: join %s: %w", ifname, Multicast, err)
	}
	// Poll in short slices so ctx is honoured.
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("lldp %s: %w", ifname, err)
	}
	buf := make([]byte, 9216)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lldp %s: receive: %w", ifname, err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // our own frames (lldpd on this host)
		}
		if nb, err := ParseFrame(buf[:n]); err == nil {
			return nb, nil
		}
	}
}

// Send transmits one raw Ethernet frame on an interface (tests, and a
// switch simulator).
func Send(ifname string, frame []byte) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var addr [8]byte
	copy(addr[:], Multicast)
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: addr, Protocol: htons(EtherType)})
}
