package dhcp

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A client without an address that did not ask for a broadcast reply gets a
// unicast one, as RFC 2131 §4.1 prefers: the server first teaches the kernel
// the client's MAC for the offered address (SIOCSARP, as dnsmasq does), so
// no ARP is needed to reach a host that cannot answer ARP yet. Any failure
// falls back to broadcast.

// arpreq is struct arpreq from <linux/if_arp.h>.
type arpreq struct {
	pa      [16]byte // struct sockaddr_in
	ha      [16]byte // struct sockaddr, sa_family ARPHRD_ETHER
	flags   int32
	netmask [16]byte
	dev     [16]byte
}

const atfCom = 0x02 // completed entry; not permanent, so it ages out

// setNeighbor installs ip → mac on the interface ifIndex.
func setNeighbor(fd int, ifIndex int, ip netip.Addr, mac net.HardwareAddr) error {
	ifi, err := net.InterfaceByIndex(ifIndex)
	if err != nil {
		return err
	}
	var req arpreq
	*(*uint16)(unsafe.Pointer(&req.pa[0])) = unix.AF_INET
	a := ip.As4()
	copy(req.pa[4:8], a[:])
	*(*uint16)(unsafe.Pointer(&req.ha[0])) = unix.ARPHRD_ETHER
	copy(req.ha[2:], mac)
	req.flags = atfCom
	copy(req.dev[:15], ifi.Name)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSARP, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return errno
	}
	return nil
}
