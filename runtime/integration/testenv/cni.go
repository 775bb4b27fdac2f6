package testenv

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BridgeNetwork is the pod network of a CRI containerd: a Linux bridge and
// a /24 created here, wired with Debian's CNI plugins (bridge, host-local,
// portmap). Pods reach each other and the host, nothing else: there is no
// masquerading and IP forwarding is left as it was.
type BridgeNetwork struct {
	Name    string // CNI network name
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr // the bridge's own address
	ConfDir string     // containerd's cni conf_dir
	BinDir  string     // containerd's cni bin_dirs
	ipamDir string
	// chainsBefore are the iptables chains that existed before the
	// network did: portmap adds CNI-HOSTPORT-* chains that CNI DEL never
	// removes, and only the ones it added are ours to delete.
	chainsBefore map[string]bool
	// cniCacheExisted tells whether libcni's result cache (cniCacheDir),
	// which containerd creates on the first pod, was there before.
	cniCacheExisted bool
}

// cniCacheDir is libcni's default cache, which containerd does not let
// us move.
const cniCacheDir = "/var/lib/cni"

// bridgeName is fixed so that a bridge left by a killed run is found and
// replaced by the next one; so there is one such network per host at a time.
const bridgeName = "podvm-test0"

// StartBridgeNetwork creates the bridge on a free 10.x subnet and writes the
// CNI configuration under dir. Everything it creates is removed when the
// test ends, after the cleanups registered later (containerd's) have run.
func StartBridgeNetwork(t testing.TB, dir, binDir string) *BridgeNetwork {
	t.Helper()
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		t.Logf("deleting bridge %s left by an earlier run", bridgeName)
		if err := ipCmd("link", "del", bridgeName); err != nil {
			t.Fatal(err)
		}
	}
	subnet, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	n := &BridgeNetwork{Name: "podvm-test", Bridge: bridgeName, Subnet: subnet, Gateway: subnet.Addr().Next(),
		ConfDir: filepath.Join(dir, "net.d"), BinDir: binDir, ipamDir: filepath.Join(dir, "ipam"),
		chainsBefore: iptablesChains()}
	if _, err := os.Stat(cniCacheDir); err == nil {
		n.cniCacheExisted = true
	}
	for _, args := range [][]string{
		{"link", "add", "name", n.Bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", n.Gateway, subnet.Bits()), "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			ipCmd("link", "del", n.Bridge)
			t.Fatalf("create bridge %s: %v", n.Bridge, err)
		}
	}
	t.Cleanup(func() { n.stop(t) })
	if err := n.writeConf(); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *BridgeNetwork) writeConf() error {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.Bridge,
				// The bridge already has the gateway address; isGateway
				// would also switch on the host's IP forwarding.
				"isGateway": false, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": n.Subnet.String(), "gateway": n.Gateway.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0", "gw": n.Gateway.String()}},
					"dataDir": n.ipamDir,
				},
			},
			// Host ports, including 127.0.0.1:port (its snat, the default,
			// makes loopback traffic reach the pod).
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.ConfDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.ConfDir, "10-podvm-test.conflist"), b, 0o644)
}

// Leaks lists what pods left on the network: interfaces still on the
// bridge, addresses still leased, CNI results still cached.
func (n *BridgeNetwork) Leaks() []string {
	var out []string
	ports, _ := os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif"))
	for _, p := range ports {
		out = append(out, "interface on bridge "+n.Bridge+": "+p.Name())
	}
	leases, _ := os.ReadDir(filepath.Join(n.ipamDir, n.Name))
	for _, l := range leases {
		if _, err := netip.ParseAddr(l.Name()); err == nil {
			out = append(out, "host-local lease: "+l.Name())
		}
	}
	results, _ := filepath.Glob(filepath.Join(cniCacheDir, "results", n.Name+"-*"))
	for _, r := range results {
		out = append(out, "CNI result cache: "+r)
	}
	return out
}

// stop deletes the bridge and the iptables chains CNI added.
func (n *BridgeNetwork) stop(t testing.TB) {
	if err := ipCmd("link", "del", n.Bridge); err != nil {
		t.Errorf("delete bridge %s: %v", n.Bridge, err)
	}
	if removed, err := removeNewCNIChains(n.chainsBefore); err != nil {
		t.Errorf("remove iptables chains CNI added: %v", err)
	} else if len(removed) > 0 {
		t.Logf("removed iptables chains CNI plugins added: %s", strings.Join(removed, ", "))
	}
	if !n.cniCacheExisted {
		// Only if empty: a result left in it is a leak to look at.
		os.Remove(filepath.Join(cniCacheDir, "results"))
		os.Remove(cniCacheDir)
	}
}

func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeSubnet picks a /24 of 10.213.0.0/16 that overlaps no route and no
// address of the host.
func freeSubnet() (netip.Prefix, error) {
	used, err := hostPrefixes()
	if err != nil {
		return netip.Prefix{}, err
	}
next:
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(i), 0}), 24)
		for _, u := range used {
			if u.Overlaps(p) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in 10.213.0.0/16 for the test pod network")
}

// hostPrefixes are the IPv4 routes (but the default route) and addresses
// of the host.
func hostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		var d, m [4]byte
		// /proc/net/route prints addresses in host (little-endian) order.
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		binary.LittleEndian.PutUint32(m[:], uint32(mask))
		bits, _ := net.IPMask(m[:]).Size()
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(d), bits))
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}
