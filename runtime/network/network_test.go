package network

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/agent/api"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAgentRequest(t *testing.T) {
	mac, _ := net.ParseMAC("0a:58:0a:fa:07:02")
	d := Description{
		Interfaces: []Interface{{Name: "eth0", MAC: mac, MTU: 1450, Addresses: []netip.Prefix{
			netip.MustParsePrefix("10.250.7.2/24"), netip.MustParsePrefix("fd00:250:7::2/64")}}},
		Routes: []Route{
			{Destination: netip.MustParsePrefix("10.250.7.0/24"), Device: "eth0", Source: netip.MustParseAddr("10.250.7.2")},
			{Gateway: netip.MustParseAddr("10.250.7.1"), Device: "eth0"},
			{Destination: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fd00:250:7::1"), Device: "eth0"},
		},
	}
	want := &api.ConfigureNetworkRequest{
		Interfaces: []*api.Interface{{Mac: "0a:58:0a:fa:07:02", Name: "eth0", Mtu: 1450, Addresses: []*api.IPAddress{
			{Address: "10.250.7.2", PrefixLen: 24}, {Address: "fd00:250:7::2", PrefixLen: 64}}}},
		Routes: []*api.Route{
			{Destination: "10.250.7.0/24", Device: "eth0", Source: "10.250.7.2"},
			{Gateway: "10.250.7.1", Device: "eth0"},
			{Gateway: "fd00:250:7::1", Device: "eth0"},
		},
	}
	if got := d.AgentRequest(); !proto.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestInspectIntegration(t *testing.T) {
	tp := newTopo(t, 1450)
	d, err := Inspect(tp.podPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", d)
	if len(d.Interfaces) != 1 {
		t.Fatalf("interfaces = %+v, want eth0 only", d.Interfaces)
	}
	i := d.Interfaces[0]
	if i.Name != "eth0" || i.MAC.String() != tp.podMAC || i.MTU != 1450 ||
		!slices.Equal(i.Addresses, []netip.Prefix{tp.podIP, tp.pod6}) {
		t.Errorf("eth0 = %+v, want MAC %s, MTU 1450, addresses %v %v (no link-local)", i, tp.podMAC, tp.podIP, tp.pod6)
	}
	want := []Route{
		{Destination: tp.podIP.Masked(), Device: "eth0", Source: tp.podIP.Addr()},
		{Destination: tp.pod6.Masked(), Device: "eth0"},
		{Gateway: tp.bridgeIP, Device: "eth0"},
	}
	if !slices.Equal(d.Routes, want) {
		t.Errorf("routes = %+v\nwant     %+v", d.Routes, want)
	}
}

func TestSetupTeardownIntegration(t *testing.T) {
	tp := newTopo(t, 1500)
	before := snapshot(t, tp.pod)
	if ok, _ := tp.ping(tp.podIP.Addr(), 1, 2); !ok {
		t.Fatal("before Setup: the pod namespace does not answer ping from the bridge")
	}

	start := time.Now()
	nw, err := Setup(tp.podPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Setup took %v", time.Since(start).Round(time.Microsecond))
	defer nw.Teardown()

	devs := nw.Devices()
	if len(devs) != 1 || devs[0].MAC != tp.podMAC || devs[0].MTU != 1500 || !devs[0].VnetHdr || devs[0].Tap == nil {
		t.Fatalf("Devices = %+v", devs)
	}
	link := run(t, "ip", "-n", tp.pod, "-d", "link", "show", "tap0_podvm")
	for _, want := range []string{"tun type tap pi off vnet_hdr on persist off", "mtu 1500", "UP", "addrgenmode none"} {
		if !strings.Contains(link, want) {
			t.Errorf("tap lacks %q:\n%s", want, link)
		}
	}
	if addrs := run(t, "ip", "-n", tp.pod, "addr", "show", "dev", "tap0_podvm"); strings.Contains(addrs, "inet") {
		t.Errorf("tap has addresses:\n%s", addrs)
	}
	// Everything from the bridge goes to the guest; from the guest, what
	// the guard (classic BPF) passes takes the same redirect, the rest
	// reaches the drop filter behind it.
	for dev, want := range map[string][]string{
		"eth0":       {"pref 1 u32", "mirred (Egress Redirect to device tap0_podvm) stolen"},
		"tap0_podvm": {"pref 1 bpf", "mirred (Egress Redirect to device eth0) stolen", "pref 2 bpf", "direct-action", "bytecode '1,6 0 0 2'"},
	} {
		f := run(t, "tc", "-n", tp.pod, "filter", "show", "dev", dev, "ingress")
		for _, w := range want {
			if !strings.Contains(f, w) {
				t.Errorf("%s: filters lack %q:\n%s", dev, w, f)
			}
		}
	}
	// The veth keeps its address (Kata's tcfilter model does the same).
	if a := run(t, "ip", "-n", tp.pod, "addr", "show", "dev", "eth0"); !strings.Contains(a, tp.podIP.String()) {
		t.Errorf("eth0 lost its address:\n%s", a)
	}

	guestStandIn(t, tp, devs[0].Tap)

	start = time.Now()
	if err := nw.Teardown(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Teardown took %v", time.Since(start).Round(time.Microsecond))
	if after := snapshot(t, tp.pod); after != before {
		t.Errorf("Teardown did not restore the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if err := nw.Teardown(); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if _, err := devs[0].Tap.Stat(); err == nil {
		t.Error("tap fd still open after Teardown")
	}
	if ok, _ := tp.ping(tp.podIP.Addr(), 1, 2); !ok {
		t.Error("after Teardown: the pod namespace does not answer ping again")
	}
}

// guestStandIn plays the guest on the tap: the bridge's ARP request and ping
// must arrive through veth -> tc -> tap, and the answers written to the tap
// must reach the bridge through tap -> tc -> veth. The pod namespace's own
// stack must not answer any more: the redirect steals every frame first.
func guestStandIn(t *testing.T, tp topo, tap *os.File) {
	t.Helper()
	run(t, "ip", "-n", tp.host, "neigh", "flush", "dev", tp.bridgeName)
	if ok, _ := tp.ping(tp.podIP.Addr(), 1, 1); ok {
		t.Fatal("the pod namespace's stack still answers ping after Setup")
	}
	mac, _ := net.ParseMAC(tp.podMAC)
	pinged := make(chan bool, 1)
	go func() {
		ok, _ := tp.ping(tp.podIP.Addr(), 1, 5)
		pinged <- ok
	}()
	// Answer until ping is done; the first frames may be left over from
	// the ping above, which nobody read.
	arps, echos, replied := 0, 0, false
answer:
	for {
		select {
		case replied = <-pinged:
			break answer
		default:
		}
		frame, err := readFrame(tap, 50*time.Millisecond)
		if err != nil {
			continue
		}
		if who, whoIP, ok := arpRequestFor(frame, tp.podIP.Addr()); ok {
			if whoIP != tp.bridgeIP {
				t.Errorf("ARP request from %s, want the bridge %s", whoIP, tp.bridgeIP)
			}
			must(t, writeFrame(tap, arpReply(mac, tp.podIP.Addr(), who, whoIP)))
			arps++
		} else if r, ok := echoReply(frame, tp.podIP.Addr()); ok {
			must(t, writeFrame(tap, r))
			echos++
		}
	}
	if arps == 0 || echos == 0 || !replied {
		t.Fatalf("stand-in guest answered %d ARP requests and %d pings; ping got a reply: %v", arps, echos, replied)
	}
	t.Logf("stand-in guest answered %d ARP requests and %d pings", arps, echos)
	if n := run(t, "ip", "-n", tp.host, "neigh", "show", tp.podIP.Addr().String()); !strings.Contains(n, tp.podMAC) {
		t.Errorf("bridge side did not learn %s at %s: %q", tp.podIP.Addr(), tp.podMAC, n)
	}
}

// A shim that crashed (and its QEMU with it) closed the tap fds: the kernel
// removed the taps, the filter on the veth stayed. A new Setup on the same
// namespace copes, and Cleanup removes everything without any state, also
// while tap fds are still open.
func TestCleanupAfterCrashIntegration(t *testing.T) {
	tp := newTopo(t, 1500)
	before := snapshot(t, tp.pod)
	crashed, err := Setup(tp.podPath())
	must(t, err)
	for _, d := range crashed.Devices() {
		must(t, d.Tap.Close())
	}
	if got := run(t, "ip", "-n", tp.pod, "-o", "link", "show"); strings.Contains(got, "_podvm") {
		t.Errorf("tap still there after its last fd closed:\n%s", got)
	}
	if f := run(t, "tc", "-n", tp.pod, "filter", "show", "dev", "eth0", "ingress"); !strings.Contains(f, "pref 1 u32") {
		t.Errorf("expected the crashed setup's filter on eth0:\n%s", f)
	}

	again, err := Setup(tp.podPath())
	if err != nil {
		t.Fatalf("Setup over leftovers: %v", err)
	}
	f := run(t, "tc", "-n", tp.pod, "filter", "show", "dev", "eth0", "ingress")
	if strings.Count(f, "mirred") != 1 || !strings.Contains(f, "device tap0_podvm") {
		t.Errorf("filters on eth0 after Setup over leftovers:\n%s", f)
	}
	if err := Cleanup(tp.podPath()); err != nil { // fds of again still open
		t.Fatal(err)
	}
	if after := snapshot(t, tp.pod); after != before {
		t.Errorf("Cleanup did not restore the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, nw := range []*Network{crashed, again} {
		if err := nw.Teardown(); err != nil {
			t.Errorf("Teardown after Cleanup: %v", err)
		}
	}
	if err := Cleanup(tp.podPath()); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}

// Teardown after the namespace was deleted (CNI DEL, sandbox removal) only
// closes the fds.
func TestTeardownAfterNetnsGoneIntegration(t *testing.T) {
	tp := newTopo(t, 1500)
	nw, err := Setup(tp.podPath())
	if err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "del", tp.pod)
	if err := nw.Teardown(); err != nil {
		t.Errorf("Teardown: %v", err)
	}
	if err := Cleanup(tp.podPath()); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
}

func TestSetupWithoutInterfacesIntegration(t *testing.T) {
	requireRoot(t)
	ns := "pvnet-empty-" + strings.ReplaceAll(t.Name(), "/", "-")
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	nw, err := Setup("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(nw.Devices()) != 0 || len(nw.Description().Interfaces) != 0 {
		t.Errorf("devices %v, description %+v", nw.Devices(), nw.Description())
	}
	if err := nw.Teardown(); err != nil {
		t.Error(err)
	}
}

func TestSetupErrorsIntegration(t *testing.T) {
	requireRoot(t)
	_, err := Setup("/var/run/netns/pvnet-does-not-exist")
	if err == nil || !strings.Contains(err.Error(), "pvnet-does-not-exist") {
		t.Errorf("missing netns: %v", err)
	}
	// An L3 device with an address cannot be mirrored: say which and where.
	tp := newTopo(t, 1500)
	before := snapshot(t, tp.pod)
	run(t, "ip", "-n", tp.pod, "tuntap", "add", "tun7", "mode", "tun")
	run(t, "ip", "-n", tp.pod, "addr", "add", "10.251.0.1/30", "dev", "tun7")
	_, err = Setup(tp.podPath())
	if err == nil || !strings.Contains(err.Error(), "tun7") || !strings.Contains(err.Error(), tp.podPath()) {
		t.Errorf("L3 interface: %v", err)
	}
	t.Log(err)
	run(t, "ip", "-n", tp.pod, "link", "del", "tun7")
	if after := snapshot(t, tp.pod); after != before {
		t.Errorf("failed Setup left changes:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestSetupTimesIntegration reports what Setup and Teardown cost the shim.
func TestSetupTimesIntegration(t *testing.T) {
	tp := newTopo(t, 1500)
	var setups, teardowns []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		nw, err := Setup(tp.podPath())
		if err != nil {
			t.Fatal(err)
		}
		setups = append(setups, time.Since(start))
		start = time.Now()
		if err := nw.Teardown(); err != nil {
			t.Fatal(err)
		}
		teardowns = append(teardowns, time.Since(start))
	}
	t.Logf("Setup: %s; Teardown: %s", stats(setups), stats(teardowns))
}

func stats(d []time.Duration) string {
	d = slices.Clone(d)
	slices.Sort(d)
	r := func(x time.Duration) time.Duration { return x.Round(time.Microsecond) }
	return fmt.Sprintf("median %v, min %v, max %v (%d runs)", r(d[len(d)/2]), r(d[0]), r(d[len(d)-1]), len(d))
}
