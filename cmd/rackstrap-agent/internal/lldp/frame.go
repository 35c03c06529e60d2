package lldp

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Frame encodes what a switch port would send: an Ethernet frame from src
// to the LLDP multicast address with chassis ID (a MAC when it parses as
// one, else locally assigned), port ID (interface name), TTL 120, port
// description, system name and management address, then the end TLV.
func Frame(src net.HardwareAddr, n inventory.LLDP) []byte {
	b := append([]byte{}, Multicast...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, EtherType)
	tlv := func(typ int, v []byte) {
		b = binary.BigEndian.AppendUint16(b, uint16(typ<<9|len(v)&0x1ff))
		b = append(b, v...)
	}
	if mac, err := net.ParseMAC(n.ChassisID); err == nil && len(mac) == 6 {
		tlv(tlvChassisID, append([]byte{4}, mac...))
	} else {
		tlv(tlvChassisID, append([]byte{7}, n.ChassisID...))
	}
	tlv(tlvPortID, append([]byte{5}, n.PortID...))
	tlv(tlvTTL, []byte{0, 120})
	if n.PortDescription != "" {
		tlv(tlvPortDesc, []byte(n.PortDescription))
	}
	if n.SystemName != "" {
		tlv(tlvSysName, []byte(n.SystemName))
	}
	if a, err := netip.ParseAddr(n.MgmtAddress); err == nil {
		fam, raw := byte(1), a.AsSlice()
		if a.Is6() {
			fam = 2
		}
		v := append([]byte{byte(1 + len(raw)), fam}, raw...)
		v = append(v, 2, 0, 0, 0, 1, 0) // ifIndex numbering, interface 1, no OID
		tlv(tlvMgmtAddr, v)
	}
	tlv(tlvEnd, nil)
	for len(b) < 60 { // minimum Ethernet frame without FCS
		b = append(b, 0)
	}
	return b
}
