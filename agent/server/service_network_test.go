package server

import (
	"net"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/network"
)

// testNetns returns an rtnetlink handle in a fresh network namespace, made
// on a locked thread that its goroutine then abandons, so nothing else ever
// runs in the namespace and the host's devices are never touched.
func testNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	if unix.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	ch := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := netns.New()
		ch <- ns
		errc <- err
	}()
	ns, err := <-ch, <-errc
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		ns.Close()
	})
	return h
}

func TestService_ConfigureNetworkRefusedOffGuest(t *testing.T) {
	a := startAgent(t, "/nonexistent/runc")
	_, err := a.ConfigureNetwork(ctxTimeout(t), &api.ConfigureNetworkRequest{})
	wantCode(t, err, codes.FailedPrecondition, "")
}

// TestService_ConfigureNetwork configures a veth standing in for the
// guest's virtio-net device, over ttrpc, in a namespace of its own.
func TestService_ConfigureNetwork(t *testing.T) {
	h := testNetns(t)
	a := startAgentWith(t, "/nonexistent/runc", func(c *Config) { c.Network = network.New(h) })
	const mac = "02:42:0a:58:00:09"
	hw, _ := net.ParseMAC(mac)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0", HardwareAddr: hw}, PeerName: "veth1"}); err != nil {
		t.Fatal(err)
	}
	req := &api.ConfigureNetworkRequest{
		Interfaces: []*api.Interface{{Mac: mac, Name: "eth0", Mtu: 1450,
			Addresses: []*api.IPAddress{{Address: "10.88.0.9", PrefixLen: 16}}}},
		Routes: []*api.Route{{Gateway: "10.88.0.1", Device: "eth0"}},
	}
	for range 2 { // the second time is a retry, which must succeed too
		if _, err := a.ConfigureNetwork(ctxTimeout(t), req); err != nil {
			t.Fatal(err)
		}
	}
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	if l.Attrs().MTU != 1450 || len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.0.9/16" {
		t.Errorf("eth0: MTU %d addresses %v", l.Attrs().MTU, addrs)
	}
	routes, _ := h.RouteList(l, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		found = found || r.Gw.Equal(net.ParseIP("10.88.0.1"))
	}
	if !found {
		t.Errorf("no default route via 10.88.0.1 in %v", routes)
	}

	bad := []struct {
		name string
		req  *api.ConfigureNetworkRequest
		code codes.Code
		says string
	}{
		{"bad MAC", &api.ConfigureNetworkRequest{Interfaces: []*api.Interface{{Mac: "zz", Name: "eth1"}}}, codes.InvalidArgument, "eth1"},
		{"unknown MAC", &api.ConfigureNetworkRequest{Interfaces: []*api.Interface{{Mac: "02:00:00:00:00:99", Name: "eth1"}}}, codes.NotFound, "eth1"},
		{"bad address", &api.ConfigureNetworkRequest{Interfaces: []*api.Interface{{Mac: mac, Name: "eth0",
			Addresses: []*api.IPAddress{{Address: "10.1.2.3", PrefixLen: 33}}}}}, codes.InvalidArgument, "eth0"},
		{"bad route", &api.ConfigureNetworkRequest{Routes: []*api.Route{{Destination: "10.0.0.0/99"}}}, codes.InvalidArgument, "10.0.0.0/99"},
		{"bad device MAC", &api.ConfigureNetworkRequest{Interfaces: []*api.Interface{{Mac: mac, DeviceMac: "zz", Name: "eth0"}}}, codes.InvalidArgument, "device MAC"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.ConfigureNetwork(ctxTimeout(t), tt.req)
			wantCode(t, err, tt.code, tt.says)
		})
	}
}
