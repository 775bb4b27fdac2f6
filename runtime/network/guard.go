package network

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// The guard decides which frames the guest may send to the pod network:
// the attacker owns the guest kernel, so anything it puts on the virtio-net
// queue arrives on the tap. It passes, per interface, only
//
//   - IPv4 from the interface's MAC and one of its IPv4 addresses;
//   - ARP (Ethernet, IPv4) from that MAC whose sender hardware address is the
//     MAC and whose sender protocol address is one of those IPv4 addresses;
//   - IPv6 from that MAC and one of its IPv6 addresses, the link-local
//     address the guest kernel derives from the MAC (EUI-64), or the
//     unspecified address :: for ICMPv6 to a multicast group (duplicate
//     address detection of that link-local address, and the MLD reports
//     sent while it is tentative; RFC 4862, RFC 3590);
//
// and nothing with a VLAN tag. Everything else goes to the drop filter
// behind it (tc.go). Frames are matched on the addresses alone: what the
// guest says to its own addresses is its business.

// Ethernet and header offsets, from the start of the frame.
const (
	offSrcMAC    = 6
	offEtherType = 12
	offIPv4Src   = 14 + 12
	offARP       = 14
	offARPSHA    = 14 + 8
	offARPSPA    = 14 + 14
	offIPv6Next  = 14 + 6
	offIPv6Src   = 14 + 8
	offIPv6Dst   = 14 + 24
	offIPv6Ext   = 14 + 40 // next header of the first extension header

	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd

	// arpEtherIPv4 is the first word of an ARP packet for IPv4 over
	// Ethernet (hardware type 1, protocol 0x0800), arpLens the next half
	// word (address lengths 6 and 4): what bridges and neighbour tables
	// parse, at the offsets the guard checks.
	arpEtherIPv4 = 0x0001_0800
	arpLens      = 0x0604

	protoHopByHop = 0
	protoICMPv6   = 58

	// guardPass is what the guard returns for a frame it lets through:
	// "matched, default class", which runs its redirect action. 0, also
	// what a load past the end of a short frame returns, is "no match".
	guardPass    = 0xffffffff
	guardNoMatch = 0
)

// guardSources are the sources one interface may send from.
type guardSources struct {
	mac  net.HardwareAddr
	ipv4 []netip.Addr
	ipv6 []netip.Addr // link-local included
}

// sourcesOf lists what iface may send from. An interface without addresses
// is refused: Setup mirrors only interfaces that CNI configured (CNI ADD
// runs before the sandbox is created), so one without is a bug, not a pod
// waiting for its address.
func sourcesOf(iface Interface) (guardSources, error) {
	if len(iface.MAC) != 6 {
		return guardSources{}, fmt.Errorf("interface %s: MAC %q is not an Ethernet address", iface.Name, iface.MAC)
	}
	if len(iface.Addresses) == 0 {
		return guardSources{}, fmt.Errorf("interface %s has no address: nothing the guest could send from it", iface.Name)
	}
	s := guardSources{mac: iface.MAC, ipv6: []netip.Addr{linkLocal(iface.MAC)}}
	for _, p := range iface.Addresses {
		switch a := p.Addr().Unmap(); {
		case a.Is4():
			s.ipv4 = append(s.ipv4, a)
		case a.Is6() && a != s.ipv6[0]:
			s.ipv6 = append(s.ipv6, a)
		}
	}
	return s, nil
}

// linkLocal is the address a Linux guest gives an Ethernet device by
// default (addr_gen_mode eui64): fe80::/64 with the EUI-64 of the MAC.
func linkLocal(mac net.HardwareAddr) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	copy(a[8:], []byte{mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
	return netip.AddrFrom16(a)
}

// guardProgram is the classic BPF program of the guard of iface.
func guardProgram(iface Interface) (cbpf, error) {
	s, err := sourcesOf(iface)
	if err != nil {
		return nil, err
	}
	macHi, macLo := binary.BigEndian.Uint32(s.mac[0:4]), uint32(binary.BigEndian.Uint16(s.mac[4:6]))
	p := cat(
		ldW(vlanTagPresent), ifEq(0,
			ldW(offSrcMAC), ifEq(macHi,
				ldH(offSrcMAC+4), ifEq(macLo,
					ldH(offEtherType),
					ifEq(etherTypeIPv4, ldW(offIPv4Src), anyOf4(s.ipv4), ret(guardNoMatch)),
					ifEq(etherTypeARP, arpFrom(macHi, macLo, s.ipv4)),
					ifEq(etherTypeIPv6, ipv6From(s.ipv6)),
				))),
		ret(guardNoMatch),
	)
	if len(p) > maxInsns {
		return nil, fmt.Errorf("interface %s: %d addresses make a guard program of %d instructions, more than the kernel's %d",
			iface.Name, len(iface.Addresses), len(p), maxInsns)
	}
	return p, nil
}

// anyOf4 passes the frame if the accumulator is one of addrs.
func anyOf4(addrs []netip.Addr) cbpf {
	var p cbpf
	for _, a := range addrs {
		p = append(p, ifEq(binary.BigEndian.Uint32(a.AsSlice()), ret(guardPass))...)
	}
	return p
}

func arpFrom(macHi, macLo uint32, ipv4 []netip.Addr) cbpf {
	return cat(
		ldW(offARP), ifEq(arpEtherIPv4,
			ldH(offARP+4), ifEq(arpLens,
				ldW(offARPSHA), ifEq(macHi,
					ldH(offARPSHA+4), ifEq(macLo,
						ldW(offARPSPA), anyOf4(ipv4))))),
		ret(guardNoMatch),
	)
}

func ipv6From(addrs []netip.Addr) cbpf {
	var p cbpf
	for _, a := range addrs {
		p = append(p, ifAddr6(a, ret(guardPass))...)
	}
	// From ::, only ICMPv6 to a multicast group, directly or behind a
	// hop-by-hop header (MLD reports carry a Router Alert option).
	unspecified := cat(
		ldB(offIPv6Dst), ifEq(0xff,
			ldB(offIPv6Next),
			ifEq(protoICMPv6, ret(guardPass)),
			ifEq(protoHopByHop, ldB(offIPv6Ext), ifEq(protoICMPv6, ret(guardPass)))),
	)
	p = append(p, ifAddr6(netip.IPv6Unspecified(), unspecified)...)
	return append(p, ret(guardNoMatch)...)
}

// ifAddr6 runs body if the IPv6 source address is a.
func ifAddr6(a netip.Addr, body cbpf) cbpf {
	b := a.As16()
	for i := 3; i >= 0; i-- {
		body = cat(ldW(offIPv6Src+uint32(4*i)), ifEq(binary.BigEndian.Uint32(b[4*i:]), body))
	}
	return body
}
