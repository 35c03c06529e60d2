// Package lldp reads the LLDP neighbour of a network port: the switch,
// port and management address the port is cabled to (IEEE 802.1AB).
// Switches send an LLDP frame about every 30 seconds, so listening is
// opt-in and bounded by a wait the caller chooses.
package lldp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// EtherType is LLDP's Ethernet type.
const EtherType = 0x88cc

// Multicast is the nearest-bridge address LLDP frames are sent to.
var Multicast = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}

// TLV types used here.
const (
	tlvEnd       = 0
	tlvChassisID = 1
	tlvPortID    = 2
	tlvTTL       = 3
	tlvPortDesc  = 4
	tlvSysName   = 5
	tlvMgmtAddr  = 8
)

// ParseFrame decodes an Ethernet frame carrying an LLDPDU (an 802.1Q tag
// is allowed).
func ParseFrame(frame []byte) (*inventory.LLDP, error) {
	if len(frame) < 14 {
		return nil, errors.New("lldp: frame shorter than an Ethernet header")
	}
	et := binary.BigEndian.Uint16(frame[12:14])
	payload := frame[14:]
	if et == 0x8100 || et == 0x88a8 { // VLAN tag
		if len(frame) < 18 {
			return nil, errors.New("lldp: truncated VLAN tag")
		}
		et = binary.BigEndian.Uint16(frame[16:18])
		payload = frame[18:]
	}
	if et != EtherType {
		return nil, fmt.Errorf("lldp: ethertype 0x%04x is not LLDP", et)
	}
	return Parse(payload)
}

// Parse decodes an LLDPDU: the mandatory chassis ID, port ID and TTL TLVs
// in that order, then optional TLVs up to the end TLV.
func Parse(pdu []byte) (*inventory.LLDP, error) {
	var n inventory.LLDP
	for i := 0; len(pdu) > 0; i++ {
		if len(pdu) < 2 {
			return nil, errors.New("lldp: truncated TLV header")
		}
		h := binary.BigEndian.Uint16(pdu[:2])
		typ, l := int(h>>9), int(h&0x1ff)
		if len(pdu) < 2+l {
			return nil, fmt.Errorf("lldp: TLV type %d claims %d bytes, %d left", typ, l, len(pdu)-2)
		}
		v := pdu[2 : 2+l]
		pdu = pdu[2+l:]
		switch {
		case i == 0 && typ != tlvChassisID, i == 1 && typ != tlvPortID, i == 2 && typ != tlvTTL:
			return nil, fmt.Errorf("lldp: TLV %d is type %d; an LLDPDU starts with chassis ID, port ID and TTL", i, typ)
		}
		switch typ {
		case tlvEnd:
			if i < 3 {
				return nil, errors.New("lldp: end TLV before the mandatory TLVs")
			}
			return &n, nil
		case tlvChassisID:
			if l < 2 {
				return nil, errors.New("lldp: chassis ID TLV too short")
			}
			n.ChassisID = idString(v[0], v[1:], 4, 5)
		case tlvPortID:
			if l < 2 {
				return nil, errors.New("lldp: port ID TLV too short")
			}
			n.PortID = idString(v[0], v[1:], 3, 4)
		case tlvTTL:
			if l < 2 {
				return nil, errors.New("lldp: TTL TLV too short")
			}
		case tlvPortDesc:
			n.PortDescription = text(v)
		case tlvSysName:
			n.SystemName = text(v)
		case tlvMgmtAddr:
			if n.MgmtAddress == "" {
				n.MgmtAddress = mgmtAddress(v)
			}
		}
	}
	if n.ChassisID == "" && n.PortID == "" {
		return nil, errors.New("lldp: empty LLDPDU")
	}
	return &n, nil // no end TLV: some switches pad instead
}

// idString renders a chassis or port ID by its subtype: a MAC address
// subtype as aa:bb:…, a network address subtype as an IP, others as text.
func idString(subtype byte, v []byte, macSubtype, netSubtype byte) string {
	switch {
	case subtype == macSubtype && len(v) == 6:
		return net.HardwareAddr(v).String()
	case subtype == netSubtype && len(v) >= 1:
		if a := ipOf(v[0], v[1:]); a != "" {
			return a
		}
	}
	return text(v)
}

// mgmtAddress reads the management address TLV (length, IANA family,
// address, then interface numbering we ignore).
func mgmtAddress(v []byte) string {
	if len(v) < 2 {
		return ""
	}
	l := int(v[0]) // family byte plus address
	if l < 2 || len(v) < 1+l {
		return ""
	}
	return ipOf(v[1], v[2:1+l])
}

// ipOf renders an IANA address family 1 (IPv4) or 2 (IPv6) address.
func ipOf(family byte, b []byte) string {
	switch {
	case family == 1 && len(b) == 4:
		return netip.AddrFrom4([4]byte(b)).String()
	case family == 2 && len(b) == 16:
		return netip.AddrFrom16([16]byte(b)).String()
	}
	return ""
}

// text trims a TLV string and drops what is not printable.
func text(b []byte) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return -1
		}
		return r
	}, string(b)))
}
