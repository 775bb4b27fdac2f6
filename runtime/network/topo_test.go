package network

// Test networks built like containerd's CRI and the CNI bridge plugin build
// them, but entirely inside namespaces the test creates: a "host" namespace
// with a bridge (cni0's role) and a pod namespace with a veth eth0 whose
// peer is a port of that bridge. The machine's own namespace and routes are
// never touched, and no packet leaves these namespaces.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/internal/vmtest"
)

// requireRoot skips (fails under PODVM_REQUIRE_INTEGRATION=1) without root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (network namespaces, taps, tc)")
	}
}

func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	vmtest.Missing(t, format, args...)
}

// topo is one pod network: names and addresses of what newTopo made.
type topo struct {
	host, pod  string // namespace names under /var/run/netns
	subnet     int    // 10.250.<subnet>.0/24
	bridgeIP   netip.Addr
	podIP      netip.Prefix
	pod6       netip.Prefix
	podMAC     string
	mtu        int
	hostVeth   string
	bridgeName string
	busybox    string // for ping
}

func (tp topo) podPath() string  { return filepath.Join("/var/run/netns", tp.pod) }
func (tp topo) hostPath() string { return filepath.Join("/var/run/netns", tp.host) }

// newTopo builds the two namespaces; t.Cleanup removes them.
func newTopo(t *testing.T, mtu int) topo {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		missing(t, "ip not found: apt-get install iproute2")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox not found (its ping is used): apt-get install busybox-static")
	}
	k := 1 + rand.IntN(250)
	id := fmt.Sprintf("%d-%d", os.Getpid(), k)
	tp := topo{
		host: "pvnet-h-" + id, pod: "pvnet-p-" + id, subnet: k, mtu: mtu,
		bridgeIP: netip.MustParseAddr(fmt.Sprintf("10.250.%d.1", k)),
		podIP:    netip.MustParsePrefix(fmt.Sprintf("10.250.%d.2/24", k)),
		pod6:     netip.MustParsePrefix(fmt.Sprintf("fd00:250:%x::2/64", k)),
		// Kubernetes' bridge plugin style: 0a:58 and the IPv4 address.
		podMAC:   fmt.Sprintf("0a:58:0a:fa:%02x:02", k),
		hostVeth: "vh" + strconv.Itoa(k), bridgeName: "cni0", busybox: bb,
	}
	for _, ns := range []string{tp.host, tp.pod} {
		run(t, "ip", "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	h, p, m := []string{"ip", "-n", tp.host}, []string{"ip", "-n", tp.pod}, strconv.Itoa(mtu)
	run(t, append(h, "link", "add", tp.bridgeName, "type", "bridge")...)
	run(t, append(h, "addr", "add", tp.bridgeIP.String()+"/24", "dev", tp.bridgeName)...)
	run(t, append(h, "addr", "add", fmt.Sprintf("fd00:250:%x::1/64", k), "dev", tp.bridgeName, "nodad")...)
	run(t, append(h, "link", "set", tp.bridgeName, "up")...)
	run(t, append(h, "link", "add", tp.hostVeth, "mtu", m, "type", "veth", "peer", "name", "eth0", "mtu", m, "netns", tp.pod)...)
	run(t, append(h, "link", "set", tp.hostVeth, "master", tp.bridgeName, "up")...)
	run(t, append(p, "link", "set", "eth0", "address", tp.podMAC)...)
	// No DAD: addresses are final at once, so snapshots taken a moment
	// apart compare equal.
	run(t, "ip", "netns", "exec", tp.pod, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	run(t, append(p, "addr", "add", tp.podIP.String(), "dev", "eth0")...)
	run(t, append(p, "addr", "add", tp.pod6.String(), "dev", "eth0", "nodad")...)
	run(t, append(p, "link", "set", "eth0", "up")...)
	run(t, append(p, "route", "add", "default", "via", tp.bridgeIP.String())...)
	waitCarrier(t, tp.pod, "eth0")
	return tp
}

// waitCarrier waits until dev reports state UP: the kernel turns the
// veth's carrier on moments after both ends are up, and a snapshot taken
// before would differ from one taken after in "NO-CARRIER".
func waitCarrier(t *testing.T, ns, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := run(t, "ip", "-n", ns, "-o", "link", "show", "dev", dev)
		if strings.Contains(out, "state UP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s not up after 5s: %s", dev, ns, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// snapshot is everything Setup may change in a namespace, as text.
func snapshot(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, c := range [][]string{
		{"ip", "-n", ns, "-d", "link", "show"},
		{"ip", "-n", ns, "addr", "show"},
		{"ip", "-n", ns, "-4", "route", "show", "table", "all"},
		{"ip", "-n", ns, "-6", "route", "show", "table", "all"},
		{"tc", "-n", ns, "qdisc", "show"},
		{"tc", "-n", ns, "filter", "show", "dev", "eth0", "ingress"},
	} {
		out, _ := exec.Command(c[0], c[1:]...).CombinedOutput()
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(c, " "), out)
	}
	return b.String()
}

var rttRE = regexp.MustCompile(`round-trip min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+) ms`)

// ping pings addr count times from the host namespace with busybox ping;
// ok is whether any reply came, summary the min/avg/max line.
func (tp topo) ping(addr netip.Addr, count int, waitSec int) (ok bool, summary string) {
	out, err := exec.Command("ip", "netns", "exec", tp.host, tp.busybox, "ping", "-A", "-c", strconv.Itoa(count),
		"-W", strconv.Itoa(waitSec), addr.String()).CombinedOutput()
	if m := rttRE.FindStringSubmatch(string(out)); m != nil {
		summary = fmt.Sprintf("min/avg/max %s/%s/%s ms", m[1], m[2], m[3])
	}
	return err == nil, summary
}
