package network

import (
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewTestNetns returns an rtnetlink handle in a fresh network namespace.
// The namespace is made on a locked thread that is then discarded (its
// goroutine ends locked), so no other goroutine ever runs in it.
func NewTestNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	if unix.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		ns, err := netns.New()
		ch <- result{ns, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Skipf("cannot create a network namespace: %v", r.err)
	}
	h, err := netlink.NewHandleAt(r.ns, unix.NETLINK_ROUTE)
	if err != nil {
		r.ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		r.ns.Close()
	})
	return h
}

// addVeth makes a veth pair whose first end has the given MAC, standing
// in for the guest's virtio-net device.
func addVeth(t *testing.T, h *netlink.Handle, name, peer, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: peer}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	p, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	// The peer up makes the device's carrier, and so its routes, live.
	if err := h.LinkSetUp(p); err != nil {
		t.Fatal(err)
	}
}

func podConfig() ([]Interface, []Route) {
	mac, _ := net.ParseMAC("02:42:0a:58:00:05")
	ifaces := []Interface{{
		MAC:   mac,
		Name:  "eth0",
		MTU:   1400,
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.88.0.5/16"), netip.MustParsePrefix("fd00:88::5/64")},
	}}
	routes := []Route{
		// Listed before the direct route that makes its gateway reachable.
		{Gateway: netip.MustParseAddr("10.99.0.1"), Device: "eth0"},
		{Dst: netip.MustParsePrefix("10.99.0.0/24"), Device: "eth0", Source: netip.MustParseAddr("10.88.0.5")},
		{Dst: netip.MustParsePrefix("192.168.7.0/24"), Gateway: netip.MustParseAddr("10.88.0.1"), Device: "eth0"},
		{Gateway: netip.MustParseAddr("fd00:88::1"), Device: "eth0"},
	}
	return ifaces, routes
}

func TestConfigure(t *testing.T) {
	h := NewTestNetns(t)
	addVeth(t, h, "veth-guest", "veth-host", "02:42:0a:58:00:05")
	c := New(h)
	ifaces, routes := podConfig()
	if err := c.Configure(ifaces, routes); err != nil {
		t.Fatal(err)
	}
	// A retry with the same configuration succeeds and changes nothing.
	if err := c.Configure(ifaces, routes); err != nil {
		t.Fatalf("second Configure: %v", err)
	}

	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 after Configure: %v", err)
	}
	a := l.Attrs()
	if a.HardwareAddr.String() != "02:42:0a:58:00:05" || a.MTU != 1400 || a.Flags&net.FlagUp == 0 {
		t.Errorf("eth0: MAC %s MTU %d flags %v", a.HardwareAddr, a.MTU, a.Flags)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ad := range addrs {
		if !ad.IP.IsLinkLocalUnicast() {
			got = append(got, ad.IPNet.String())
		}
	}
	slices.Sort(got)
	if want := []string{"10.88.0.5/16", "fd00:88::5/64"}; !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}

	rs, err := h.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, r := range rs {
		table = append(table, routeString(r))
	}
	t.Logf("routes of eth0: %q", table)
	for _, want := range []string{
		"default via 10.99.0.1",
		"10.99.0.0/24 src 10.88.0.5",
		"192.168.7.0/24 via 10.88.0.1",
		"10.88.0.0/16",
		"default via fd00:88::1",
	} {
		if !slices.Contains(table, want) {
			t.Errorf("route %q missing from %q", want, table)
		}
	}
}

func routeString(r netlink.Route) string {
	var s []string
	if r.Dst == nil || isDefault(r.Dst) {
		s = append(s, "default")
	} else {
		s = append(s, r.Dst.String())
	}
	if r.Gw != nil {
		s = append(s, "via "+r.Gw.String())
	}
	if r.Src != nil && r.Protocol != unix.RTPROT_KERNEL {
		s = append(s, "src "+r.Src.String())
	}
	return strings.Join(s, " ")
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// TestConfigureSwapsNames gives two devices each other's names.
func TestConfigureSwapsNames(t *testing.T) {
	h := NewTestNetns(t)
	addVeth(t, h, "eth0", "peer0", "02:00:00:00:00:01")
	addVeth(t, h, "net1", "peer1", "02:00:00:00:00:02")
	m1, _ := net.ParseMAC("02:00:00:00:00:01")
	m2, _ := net.ParseMAC("02:00:00:00:00:02")
	err := New(h).Configure([]Interface{{MAC: m1, Name: "net1"}, {MAC: m2, Name: "eth0"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, mac := range map[string]string{"net1": m1.String(), "eth0": m2.String()} {
		l, err := h.LinkByName(name)
		if err != nil || l.Attrs().HardwareAddr.String() != mac {
			t.Errorf("%s: %v, %v; want MAC %s", name, l, err, mac)
		}
	}
}

func TestConfigureErrorsNameTheCulprit(t *testing.T) {
	h := NewTestNetns(t)
	addVeth(t, h, "veth-guest", "veth-host", "02:42:0a:58:00:05")
	c := New(h)
	missing, _ := net.ParseMAC("02:ff:ff:ff:ff:ff")
	err := c.Configure([]Interface{{MAC: missing, Name: "eth1"}}, nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "eth1") || !strings.Contains(err.Error(), "02:ff:ff:ff:ff:ff") {
		t.Errorf("unknown MAC: %v", err)
	}
	err = c.Configure(nil, []Route{{Dst: netip.MustParsePrefix("10.1.0.0/16"), Device: "nosuch0"}})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "10.1.0.0/16 dev nosuch0") {
		t.Errorf("unknown device: %v", err)
	}
	ifaces, _ := podConfig()
	if err := c.Configure(ifaces, nil); err != nil {
		t.Fatal(err)
	}
	err = c.Configure(nil, []Route{{Gateway: netip.MustParseAddr("172.16.0.1"), Device: "eth0"}})
	if err == nil || !strings.Contains(err.Error(), "default via 172.16.0.1 dev eth0") {
		t.Errorf("unreachable gateway: %v", err)
	}
}

// TestConfigureSetsMAC gives a device found by DeviceMAC (a clone's, with
// the template's MAC) the pod's MAC; a retry finds it by the new one.
func TestConfigureSetsMAC(t *testing.T) {
	h := NewTestNetns(t)
	addVeth(t, h, "eth0", "peer0", "02:70:64:76:6d:01")
	ifaces, routes := podConfig()
	ifaces[0].DeviceMAC, _ = net.ParseMAC("02:70:64:76:6d:01")
	c := New(h)
	for i := range 2 {
		if err := c.Configure(ifaces, routes); err != nil {
			t.Fatalf("Configure %d: %v", i, err)
		}
	}
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if a := l.Attrs(); a.HardwareAddr.String() != "02:42:0a:58:00:05" || a.Flags&net.FlagUp == 0 {
		t.Errorf("eth0: MAC %s flags %v, want the pod's MAC and up", a.HardwareAddr, a.Flags)
	}
}
