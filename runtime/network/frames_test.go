package network

// A user-space stand-in for the guest: it reads frames from a tap opened
// with IFF_VNET_HDR and answers ARP and ICMP echo, so that the tc plumbing
// can be checked both ways without booting a VM.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// vnetHdrLen is the size of struct virtio_net_hdr, the tap's default
// header size (QEMU raises it with TUNSETVNETHDRSZ; this test does not).
const vnetHdrLen = 10

const (
	etherARP  = 0x0806
	etherIPv4 = 0x0800
)

// readFrame waits up to d for one frame and returns it without the header.
func readFrame(f *os.File, d time.Duration) ([]byte, error) {
	fd := int(f.Fd())
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, int(d.Milliseconds()))
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("no frame on the tap")
	}
	buf := make([]byte, 65536+vnetHdrLen)
	n, err = unix.Read(fd, buf)
	if err != nil {
		return nil, err
	}
	if n < vnetHdrLen+14 {
		return nil, errors.New("runt frame")
	}
	return buf[vnetHdrLen:n], nil
}

// writeFrame sends frame to the tap with an all-zero header (no offload).
func writeFrame(f *os.File, frame []byte) error {
	_, err := unix.Write(int(f.Fd()), append(make([]byte, vnetHdrLen), frame...))
	return err
}

func etherType(frame []byte) uint16 { return binary.BigEndian.Uint16(frame[12:14]) }

// arpRequestFor reports whether frame asks who has ip, and who asks.
func arpRequestFor(frame []byte, ip netip.Addr) (senderMAC net.HardwareAddr, senderIP netip.Addr, ok bool) {
	if etherType(frame) != etherARP || len(frame) < 42 {
		return nil, netip.Addr{}, false
	}
	a := frame[14:]
	if binary.BigEndian.Uint16(a[6:8]) != 1 { // opcode request
		return nil, netip.Addr{}, false
	}
	if netip.AddrFrom4([4]byte(a[24:28])) != ip {
		return nil, netip.Addr{}, false
	}
	return net.HardwareAddr(a[8:14]), netip.AddrFrom4([4]byte(a[14:18])), true
}

// arpReply answers an ARP request for (mac, ip) from (toMAC, toIP).
func arpReply(mac net.HardwareAddr, ip netip.Addr, toMAC net.HardwareAddr, toIP netip.Addr) []byte {
	var b bytes.Buffer
	b.Write(toMAC)
	b.Write(mac)
	binary.Write(&b, binary.BigEndian, uint16(etherARP))
	binary.Write(&b, binary.BigEndian, []uint16{1, etherIPv4}) // Ethernet, IPv4
	b.Write([]byte{6, 4})
	binary.Write(&b, binary.BigEndian, uint16(2)) // reply
	b.Write(mac)
	b.Write(ip.AsSlice())
	b.Write(toMAC)
	b.Write(toIP.AsSlice())
	return b.Bytes()
}

// echoReply turns an ICMP echo request to ip into its reply, or says no.
// Swapping addresses leaves the IP checksum as it is; echo request to
// reply changes one 16-bit word by 0x0800 in the ICMP checksum.
func echoReply(frame []byte, ip netip.Addr) ([]byte, bool) {
	if etherType(frame) != etherIPv4 || len(frame) < 14+20+8 {
		return nil, false
	}
	p := frame[14:]
	ihl := int(p[0]&0x0f) * 4
	if p[9] != unix.IPPROTO_ICMP || netip.AddrFrom4([4]byte(p[16:20])) != ip || p[ihl] != 8 {
		return nil, false
	}
	r := bytes.Clone(frame)
	copy(r[0:6], frame[6:12])
	copy(r[6:12], frame[0:6])
	q := r[14:]
	copy(q[12:16], p[16:20])
	copy(q[16:20], p[12:16])
	icmp := q[ihl:]
	icmp[0] = 0
	sum := uint32(binary.BigEndian.Uint16(icmp[2:4])) + 0x0800
	sum = (sum & 0xffff) + sum>>16
	binary.BigEndian.PutUint16(icmp[2:4], uint16(sum))
	return r, true
}
