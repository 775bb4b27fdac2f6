package network

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// Frames as a hostile guest writes them. Each carries payload (a marker the
// integration test looks for on the bridge side) where the protocol has
// room, and after the ARP body otherwise.

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func ether(dst, src net.HardwareAddr, etherType uint16) []byte {
	b := append(append([]byte{}, dst...), src...)
	return binary.BigEndian.AppendUint16(b, etherType)
}

// udp4Frame is IPv4/UDP from (mac, src) to dst, broadcast on Ethernet.
func udp4Frame(mac net.HardwareAddr, src, dst netip.Addr, payload []byte) []byte {
	ip := make([]byte, 20, 28+len(payload))
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	copy(ip[12:], src.AsSlice())
	copy(ip[16:], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	sum = (sum & 0xffff) + sum>>16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum+sum>>16))
	ip = binary.BigEndian.AppendUint16(ip, 40000)
	ip = binary.BigEndian.AppendUint16(ip, 9) // discard
	ip = binary.BigEndian.AppendUint16(ip, uint16(8+len(payload)))
	ip = append(ip, 0, 0) // no UDP checksum
	return append(append(ether(broadcastMAC, mac, etherIPv4), ip...), payload...)
}

// arpFrame is an ARP packet (op 1 request, 2 reply) in an Ethernet frame
// from ethSrc.
func arpFrame(ethSrc net.HardwareAddr, op uint16, sha net.HardwareAddr, spa, tpa netip.Addr, trailer []byte) []byte {
	var b bytes.Buffer
	b.Write(ether(broadcastMAC, ethSrc, etherARP))
	binary.Write(&b, binary.BigEndian, []uint16{1, etherIPv4})
	b.Write([]byte{6, 4})
	binary.Write(&b, binary.BigEndian, op)
	b.Write(sha)
	b.Write(spa.AsSlice())
	b.Write(make([]byte, 6))
	b.Write(tpa.AsSlice())
	b.Write(trailer)
	return b.Bytes()
}

// ipv6Frame is IPv6 with the given next header; a hop-by-hop header (0)
// gets a Router Alert option and ICMPv6 behind it, as MLD reports do.
func ipv6Frame(mac net.HardwareAddr, src, dst netip.Addr, next byte, payload []byte) []byte {
	if next == protoHopByHop {
		payload = append([]byte{protoICMPv6, 0, 5, 2, 0, 0, 1, 0}, payload...)
	}
	ip := make([]byte, 40)
	ip[0], ip[6], ip[7] = 0x60, next, 1
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	copy(ip[8:], src.AsSlice())
	copy(ip[24:], dst.AsSlice())
	return append(append(ether(broadcastMAC, mac, etherTypeIPv6), ip...), payload...)
}

// vlanTagged is frame with an 802.1Q tag, as the guest may write it.
func vlanTagged(frame []byte, vid uint16) []byte {
	b := append([]byte{}, frame[:12]...)
	b = binary.BigEndian.AppendUint16(b, 0x8100)
	b = binary.BigEndian.AppendUint16(b, vid)
	return append(b, frame[12:]...)
}

func withEtherType(frame []byte, t uint16) []byte {
	b := bytes.Clone(frame)
	binary.BigEndian.PutUint16(b[12:], t)
	return b
}

// spoofCase is one frame a guest sends and whether the guard passes it.
type spoofCase struct {
	name  string
	frame []byte
	pass  bool
}

// spoofCases are the frames of the pod interface (mac, ip4, ip6) and of
// its would-be victim (otherMAC, other4, other6), each with a marker.
func spoofCases(mac net.HardwareAddr, ip4, ip6 netip.Addr, otherMAC net.HardwareAddr, other4, other6, gw4 netip.Addr) []spoofCase {
	ll, otherLL, none := linkLocal(mac), linkLocal(otherMAC), netip.IPv6Unspecified()
	dad := netip.MustParseAddr("ff02::1:ff00:0")
	mld := netip.MustParseAddr("ff02::16")
	c := func(name string, pass bool, frame func(marker []byte) []byte) spoofCase {
		return spoofCase{name, frame([]byte("podvm-guard:" + name + ";")), pass}
	}
	return []spoofCase{
		c("ipv4 own", true, func(m []byte) []byte { return udp4Frame(mac, ip4, gw4, m) }),
		c("ipv4 forged source MAC", false, func(m []byte) []byte { return udp4Frame(otherMAC, ip4, gw4, m) }),
		c("ipv4 forged source IP", false, func(m []byte) []byte { return udp4Frame(mac, other4, gw4, m) }),
		c("ipv4 another pod's MAC and IP", false, func(m []byte) []byte { return udp4Frame(otherMAC, other4, gw4, m) }),
		c("ipv4 own with VLAN tag", false, func(m []byte) []byte { return vlanTagged(udp4Frame(mac, ip4, gw4, m), 7) }),
		c("arp request own", true, func(m []byte) []byte { return arpFrame(mac, 1, mac, ip4, gw4, m) }),
		c("arp reply own", true, func(m []byte) []byte { return arpFrame(mac, 2, mac, ip4, gw4, m) }),
		c("gratuitous arp own", true, func(m []byte) []byte { return arpFrame(mac, 1, mac, ip4, ip4, m) }),
		c("arp forged sender IP", false, func(m []byte) []byte { return arpFrame(mac, 1, mac, other4, gw4, m) }),
		c("arp forged sender MAC", false, func(m []byte) []byte { return arpFrame(mac, 2, otherMAC, ip4, gw4, m) }),
		c("arp forged Ethernet source", false, func(m []byte) []byte { return arpFrame(otherMAC, 1, mac, ip4, gw4, m) }),
		c("gratuitous arp for another IP", false, func(m []byte) []byte { return arpFrame(mac, 2, mac, other4, other4, m) }),
		c("arp probe from 0.0.0.0", false, func(m []byte) []byte { return arpFrame(mac, 1, mac, netip.IPv4Unspecified(), other4, m) }),
		c("ipv6 own global", true, func(m []byte) []byte { return ipv6Frame(mac, ip6, other6, protoICMPv6, m) }),
		c("ipv6 own link-local", true, func(m []byte) []byte { return ipv6Frame(mac, ll, otherLL, protoICMPv6, m) }),
		c("ipv6 DAD from ::", true, func(m []byte) []byte { return ipv6Frame(mac, none, dad, protoICMPv6, m) }),
		c("ipv6 MLD report from ::", true, func(m []byte) []byte { return ipv6Frame(mac, none, mld, protoHopByHop, m) }),
		c("ipv6 forged source", false, func(m []byte) []byte { return ipv6Frame(mac, other6, ip6, protoICMPv6, m) }),
		c("ipv6 another pod's link-local", false, func(m []byte) []byte { return ipv6Frame(mac, otherLL, ll, protoICMPv6, m) }),
		c("ipv6 own with forged MAC", false, func(m []byte) []byte { return ipv6Frame(otherMAC, ip6, other6, protoICMPv6, m) }),
		c("ipv6 UDP from ::", false, func(m []byte) []byte { return ipv6Frame(mac, none, mld, 17, m) }),
		c("ipv6 ICMPv6 from :: to unicast", false, func(m []byte) []byte { return ipv6Frame(mac, none, other6, protoICMPv6, m) }),
		c("ipv6 hop-by-hop UDP from ::", false, func(m []byte) []byte {
			f := ipv6Frame(mac, none, mld, protoHopByHop, m)
			f[offIPv6Ext] = 17
			return f
		}),
		c("RARP", false, func(m []byte) []byte { return withEtherType(arpFrame(mac, 3, mac, ip4, ip4, m), 0x8035) }),
		c("802.3 length frame", false, func(m []byte) []byte { return withEtherType(udp4Frame(mac, ip4, gw4, m), 46) }),
	}
}

var (
	testMAC   = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xfa, 0x07, 0x02}
	otherMAC  = net.HardwareAddr{0x0a, 0x58, 0x0a, 0xfa, 0x07, 0x03}
	testIface = Interface{Name: "eth0", MAC: testMAC, Addresses: []netip.Prefix{
		netip.MustParsePrefix("10.250.7.2/24"), netip.MustParsePrefix("fd00:250:7::2/64"),
		netip.MustParsePrefix("10.250.8.2/24")}}
)

func TestGuardProgram(t *testing.T) {
	p, err := guardProgram(testIface)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d instructions", len(p))
	ip4, ip6 := netip.MustParseAddr("10.250.7.2"), netip.MustParseAddr("fd00:250:7::2")
	cases := spoofCases(testMAC, ip4, ip6, otherMAC,
		netip.MustParseAddr("10.250.7.3"), netip.MustParseAddr("fd00:250:7::3"), netip.MustParseAddr("10.250.7.1"))
	cases = append(cases,
		spoofCase{"ipv4 own second address", udp4Frame(testMAC, netip.MustParseAddr("10.250.8.2"), ip4, nil), true},
		spoofCase{"arp with 8-byte hardware addresses", func() []byte {
			f := arpFrame(testMAC, 1, testMAC, ip4, ip4, nil)
			f[18] = 8
			return f
		}(), false},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vlan := c.name == "ipv4 own with VLAN tag"
			f := c.frame
			if vlan { // the kernel moves the tag out of the frame before tc
				f = append(bytes.Clone(f[:12]), f[16:]...)
			}
			checkGuard(t, p, f, vlan, c.pass)
		})
	}
}

// checkGuard runs p on frame and on every shorter prefix of it: a prefix
// that ends before the last byte the guard reads must not pass.
func checkGuard(t *testing.T, p cbpf, frame []byte, vlan, pass bool) {
	t.Helper()
	got, err := runCBPF(p, frame, vlan)
	if err != nil {
		t.Fatal(err)
	}
	if got != guardPass && got != guardNoMatch {
		t.Fatalf("returned %#x: neither pass nor no match", got)
	}
	if (got == guardPass) != pass {
		t.Errorf("passed %v, want %v (frame % x)", got == guardPass, pass, frame)
	}
	if !pass {
		return
	}
	// The last byte read: the source address (IPv4, IPv6) or the
	// sender address (ARP), or the next header behind hop-by-hop.
	last := map[uint16]int{etherIPv4: offIPv4Src + 4, etherARP: offARPSPA + 4, etherTypeIPv6: offIPv6Src + 16}[etherType(frame)]
	if etherType(frame) == etherTypeIPv6 && frame[offIPv6Src] == 0 {
		last = offIPv6Ext + 1
		if frame[offIPv6Next] == protoICMPv6 {
			last = offIPv6Dst + 1
		}
	}
	for n := 0; n < last; n++ {
		if got, err := runCBPF(p, frame[:n], vlan); err != nil || got != guardNoMatch {
			t.Errorf("first %d of %d bytes: %#x, %v; want no match", n, len(frame), got, err)
		}
	}
}

func TestGuardInterfaces(t *testing.T) {
	ip4 := netip.MustParseAddr("10.250.7.2")
	ip6 := netip.MustParseAddr("fd00:250:7::2")
	v4only := Interface{Name: "eth0", MAC: testMAC, Addresses: []netip.Prefix{netip.PrefixFrom(ip4, 24)}}
	v6only := Interface{Name: "eth0", MAC: testMAC, Addresses: []netip.Prefix{netip.PrefixFrom(ip6, 64)}}
	many := Interface{Name: "net1", MAC: testMAC}
	for i := range 300 {
		many.Addresses = append(many.Addresses, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i), 14: byte(i >> 8)}), 64))
	}
	lastOfMany := many.Addresses[299].Addr()
	for _, c := range []struct {
		name  string
		iface Interface
		frame []byte
		pass  bool
	}{
		{"IPv4 only: its address", v4only, udp4Frame(testMAC, ip4, ip4, nil), true},
		{"IPv4 only: link-local", v4only, ipv6Frame(testMAC, linkLocal(testMAC), ip6, protoICMPv6, nil), true},
		{"IPv4 only: an IPv6 address", v4only, ipv6Frame(testMAC, ip6, ip6, protoICMPv6, nil), false},
		{"IPv6 only: its address", v6only, ipv6Frame(testMAC, ip6, ip6, protoICMPv6, nil), true},
		{"IPv6 only: IPv4", v6only, udp4Frame(testMAC, ip4, ip4, nil), false},
		{"IPv6 only: ARP", v6only, arpFrame(testMAC, 1, testMAC, ip4, ip4, nil), false},
		{"300 addresses: the last", many, ipv6Frame(testMAC, lastOfMany, ip6, protoICMPv6, nil), true},
		{"300 addresses: another", many, ipv6Frame(testMAC, ip6, ip6, protoICMPv6, nil), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := guardProgram(c.iface)
			if err != nil {
				t.Fatal(err)
			}
			checkGuard(t, p, c.frame, false, c.pass)
		})
	}
}

func TestGuardErrors(t *testing.T) {
	tooMany := Interface{Name: "net1", MAC: testMAC}
	for i := range 600 {
		tooMany.Addresses = append(tooMany.Addresses, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i), 14: byte(i >> 8)}), 64))
	}
	for _, c := range []struct {
		iface Interface
		want  string
	}{
		{Interface{Name: "eth0", MAC: testMAC}, "eth0 has no address"},
		{Interface{Name: "ib0", MAC: make(net.HardwareAddr, 20), Addresses: testIface.Addresses}, "not an Ethernet address"},
		{tooMany, "600 addresses"},
	} {
		_, err := guardProgram(c.iface)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.iface.Name, err, c.want)
		}
	}
}

func TestLinkLocal(t *testing.T) {
	for mac, want := range map[string]string{
		"0a:58:0a:fa:07:02": "fe80::858:aff:fefa:702",
		"52:54:00:12:34:56": "fe80::5054:ff:fe12:3456",
	} {
		m, _ := net.ParseMAC(mac)
		if got := linkLocal(m); got.String() != want {
			t.Errorf("%s: %s, want %s", mac, got, want)
		}
	}
}
