package probe

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"time"
)

// pinger sends ICMP echo requests to one address: the round trip through
// the pod network to the pod's kernel, which answers it without any
// process of the pod running.
type pinger struct {
	conn net.PacketConn
	dst  *net.IPAddr
	id   uint16
	seq  uint16
}

func newPinger(ip string) (*pinger, error) {
	dst, err := net.ResolveIPAddr("ip4", ip)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("ICMP socket: %w", err)
	}
	return &pinger{conn: conn, dst: dst, id: uint16(os.Getpid())}, nil
}

func (p *pinger) Close() error { return p.conn.Close() }

// ping is one echo request's round trip.
func (p *pinger) ping(timeout time.Duration) (time.Duration, error) {
	p.seq++
	req := echo(8, p.id, p.seq)
	start := time.Now()
	if _, err := p.conn.WriteTo(req, p.dst); err != nil {
		return 0, fmt.Errorf("ping %s: %w", p.dst, err)
	}
	p.conn.SetReadDeadline(start.Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return 0, fmt.Errorf("ping %s: %w", p.dst, err)
		}
		// Every raw ICMP socket sees every ICMP packet: keep our reply.
		if n >= 8 && buf[0] == 0 && from.String() == p.dst.String() &&
			binary.BigEndian.Uint16(buf[4:]) == p.id && binary.BigEndian.Uint16(buf[6:]) == p.seq {
			return time.Since(start), nil
		}
	}
}

// echo is an ICMP message of type typ (8: echo request) with its
// checksum.
func echo(typ byte, id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "podvm-pb")
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
