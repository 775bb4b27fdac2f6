package network

// The guest as the attacker: frames written into the tap fd, as a guest
// kernel puts them on its virtio-net queue, and a packet socket on the
// bridge's port (the host end of the pod's veth) that records which of them
// arrive.

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestGuardIntegration(t *testing.T) {
	tp := newTopo(t, 1500)
	nw, err := Setup(tp.podPath())
	must(t, err)
	t.Cleanup(func() { nw.Teardown() })
	tap := nw.Devices()[0].Tap
	port := packetSocket(t, tp)

	mac, _ := net.ParseMAC(tp.podMAC)
	victimMAC := append(net.HardwareAddr{}, mac...)
	victimMAC[5]++
	victim4 := tp.podIP.Addr().Next()
	victim6 := tp.pod6.Addr().Next()
	cases := spoofCases(mac, tp.podIP.Addr(), tp.pod6.Addr(), victimMAC, victim4, victim6, tp.bridgeIP)

	dropsBefore := tapDrops(t, tp)
	forged := 0
	for _, c := range cases {
		must(t, writeFrame(tap, c.frame))
		if !c.pass {
			forged++
		}
	}
	arrived := receiveMarkers(t, port, 500*time.Millisecond)
	for _, c := range cases {
		marker := c.frame[bytes.Index(c.frame, []byte("podvm-guard:")):]
		got := arrived[string(marker[:bytes.IndexByte(marker, ';')+1])]
		switch {
		case c.pass && !got:
			t.Errorf("%s: never reached the bridge", c.name)
		case !c.pass && got:
			t.Errorf("%s: reached the bridge", c.name)
		}
	}
	if drops := tapDrops(t, tp) - dropsBefore; drops != uint32(forged) {
		t.Errorf("the tap's ingress qdisc counted %d drops, want %d (the forged frames)", drops, forged)
	}
	t.Logf("%d frames written, %d of them forged; %d markers seen on the bridge port", len(cases), forged, len(arrived))
}

// packetSocket opens an AF_PACKET socket on the host end of the pod's veth,
// in the host namespace; the test closes it.
func packetSocket(t *testing.T, tp topo) int {
	t.Helper()
	n, err := openNS(tp.hostPath())
	must(t, err)
	defer n.Close()
	l, err := n.nl.LinkByName(tp.hostVeth)
	must(t, err)
	all := htons(unix.ETH_P_ALL)
	var fd int
	must(t, n.run(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(all))
		return err
	}))
	t.Cleanup(func() { unix.Close(fd) })
	must(t, unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: l.Attrs().Index}))
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// receiveMarkers collects the "podvm-guard:...;" markers of the frames
// that arrive on the port from the pod during d; frames the bridge sends
// to the pod (an ICMP error quoting one, say) do not count.
func receiveMarkers(t *testing.T, fd int, d time.Duration) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds())+1); err != nil || n == 0 {
			continue
		}
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("read the bridge port: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f := buf[:n]
		if i := bytes.Index(f, []byte("podvm-guard:")); i >= 0 {
			if j := bytes.IndexByte(f[i:], ';'); j >= 0 {
				seen[string(f[i:i+j+1])] = true
			}
		}
	}
	return seen
}

// tapDrops is the drop count of the tap's ingress qdisc.
func tapDrops(t *testing.T, tp topo) uint32 {
	t.Helper()
	n, err := openNS(tp.podPath())
	must(t, err)
	defer n.Close()
	tap, err := n.nl.LinkByName(tapName(0))
	must(t, err)
	qs, err := n.nl.QdiscList(tap)
	must(t, err)
	for _, q := range qs {
		if _, ok := q.(*netlink.Ingress); ok && q.Attrs().Statistics != nil && q.Attrs().Statistics.Queue != nil {
			return q.Attrs().Statistics.Queue.Drops
		}
	}
	t.Fatalf("no ingress qdisc statistics on %s: %+v", tapName(0), qs)
	return 0
}
