package hostenv

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
	"time"
)

// network is the benchmark pods' network: a bridge and a /24 of its own,
// wired with CNI's bridge and host-local plugins. No portmap, no
// masquerading: pods reach each other and the host, and no iptables rule
// is added.
type network struct {
	name    string // CNI network name
	bridge  string
	subnet  netip.Prefix
	confDir string
	ipamDir string
}

// The bridge's name is fixed, so that one left by a killed run is found and
// replaced by the next; it differs from the tests' (podvm-test0) so that a
// benchmark and a test run side by side.
const (
	bridgeName  = "podvm-bench0"
	networkName = "podvm-bench"
	cniCacheDir = "/var/lib/cni"
	// subnetSecondOctet: pods get a free /24 of 10.214.0.0/16.
	subnetSecondOctet = 214
)

func startNetwork(dir string) (*network, error) {
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		if err := ipCmd("link", "del", bridgeName); err != nil {
			return nil, fmt.Errorf("delete bridge %s left by an earlier run: %w", bridgeName, err)
		}
	}
	subnet, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	n := &network{name: networkName, bridge: bridgeName, subnet: subnet,
		confDir: filepath.Join(dir, "net.d"), ipamDir: filepath.Join(dir, "ipam")}
	gw := subnet.Addr().Next()
	for _, args := range [][]string{
		{"link", "add", "name", n.bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", gw, subnet.Bits()), "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			ipCmd("link", "del", n.bridge)
			return nil, fmt.Errorf("create bridge %s: %w", n.bridge, err)
		}
	}
	conf, _ := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.name,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": n.bridge,
			// The bridge has the gateway address already; isGateway would
			// also switch on the host's IP forwarding.
			"isGateway": false, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": subnet.String(), "gateway": gw.String()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0", "gw": gw.String()}},
				"dataDir": n.ipamDir,
			},
		}},
	}, "", "  ")
	if err := os.MkdirAll(n.confDir, 0o755); err != nil {
		n.stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(n.confDir, "10-podvm-bench.conflist"), conf, 0o644); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// leaks lists what pods left on the network.
func (n *network) leaks() []string {
	var out []string
	ports, _ := os.ReadDir(filepath.Join("/sys/class/net", n.bridge, "brif"))
	for _, p := range ports {
		out = append(out, "interface on bridge "+n.bridge+": "+p.Name())
	}
	leases, _ := os.ReadDir(filepath.Join(n.ipamDir, n.name))
	for _, l := range leases {
		if _, err := netip.ParseAddr(l.Name()); err == nil {
			out = append(out, "host-local lease: "+l.Name())
		}
	}
	results, _ := filepath.Glob(filepath.Join(cniCacheDir, "results", n.name+"-*"))
	for _, r := range results {
		out = append(out, "CNI result cache: "+r)
	}
	return out
}

func (n *network) stop() error {
	return ipCmd("link", "del", n.bridge)
}

func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeSubnet picks a /24 of 10.214.0.0/16 that overlaps no route and no
// address of the host.
func freeSubnet() (netip.Prefix, error) {
	used, err := hostPrefixes()
	if err != nil {
		return netip.Prefix{}, err
	}
	return pickSubnet(used)
}

func pickSubnet(used []netip.Prefix) (netip.Prefix, error) {
next:
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, subnetSecondOctet, byte(i), 0}), 24)
		for _, u := range used {
			if u.Overlaps(p) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in 10.%d.0.0/16 for the benchmark's pod network", subnetSecondOctet)
}

// hostPrefixes are the IPv4 routes (but the default route) and addresses
// of the host.
func hostPrefixes() ([]netip.Prefix, error) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	out := parseRoutes(string(b))
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

// parseRoutes reads /proc/net/route, whose addresses are in host
// (little-endian) byte order; the default route is left out.
func parseRoutes(text string) []netip.Prefix {
	var out []netip.Prefix
	lines := strings.Split(text, "\n")
	for _, line := range lines[min(1, len(lines)):] {
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
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		binary.LittleEndian.PutUint32(m[:], uint32(mask))
		bits, _ := net.IPMask(m[:]).Size()
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(d), bits))
	}
	return out
}
