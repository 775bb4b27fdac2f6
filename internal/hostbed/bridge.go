package hostbed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// BridgeOptions say how StartBridgeNetwork names and wires its network.
type BridgeOptions struct {
	// Name is the CNI network name.
	Name string
	// Bridge is a fixed name, so that a bridge left by a killed run is
	// found and replaced by the next one: one such network per host and
	// name at a time.
	Bridge string
	// Dir receives net.d (the CNI conf_dir) and ipam (host-local's leases).
	Dir string
	// BinDir holds the CNI plugins.
	BinDir string
	// SubnetOctet picks the network's /24 from 10.<SubnetOctet>.0.0/16.
	SubnetOctet byte
	// Portmap adds the portmap plugin; Stop then removes the CNI-* nat
	// chains it added (and only those: the ones that existed before
	// StartBridgeNetwork are left).
	Portmap bool
	// RemoveCNICache makes Stop remove libcni's result cache (CNICacheDir)
	// if it was not there before and is empty again.
	RemoveCNICache bool
	// Logf, if set, is told what is done besides the plan: a stale bridge
	// replaced, iptables chains removed.
	Logf func(format string, args ...any)
}

// BridgeNetwork is a pod network of a CNI containerd: a Linux bridge and a
// /24 created here (see CNIConfig).
type BridgeNetwork struct {
	CNIConfig
	ConfDir string // containerd's cni conf_dir
	BinDir  string // containerd's cni bin_dirs

	opts         BridgeOptions
	chainsBefore map[string]bool
	cacheExisted bool
}

// cniChains are the chains CNI's portmap adds.
var cniChains = Chains{Tools: []string{"iptables", "ip6tables"}, Tables: []string{"nat"}, Prefixes: []string{"CNI-"}}

// StartBridgeNetwork creates the bridge on a free /24 and writes the CNI
// configuration. On error nothing is left.
func StartBridgeNetwork(o BridgeOptions) (*BridgeNetwork, error) {
	// Before the free subnet is chosen, so that its subnet is free again.
	if _, err := netlink.LinkByName(o.Bridge); err == nil {
		o.logf("deleting bridge %s left by an earlier run", o.Bridge)
		if err := DeleteBridge(o.Bridge); err != nil {
			return nil, err
		}
	}
	used, err := HostPrefixes()
	if err != nil {
		return nil, err
	}
	subnet, err := PickSubnet(o.SubnetOctet, used)
	if err != nil {
		return nil, fmt.Errorf("pod network %s: %w", o.Name, err)
	}
	n := &BridgeNetwork{
		CNIConfig: CNIConfig{Name: o.Name, Bridge: o.Bridge, Subnet: subnet, Gateway: subnet.Addr().Next(),
			IPAMDir: filepath.Join(o.Dir, "ipam"), Portmap: o.Portmap},
		ConfDir: filepath.Join(o.Dir, "net.d"), BinDir: o.BinDir, opts: o,
	}
	if o.Portmap {
		n.chainsBefore = cniChains.Snapshot()
	}
	if _, err := os.Stat(CNICacheDir); err == nil {
		n.cacheExisted = true
	}
	if _, err := CreateBridge(n.Bridge, netip.PrefixFrom(n.Gateway, subnet.Bits())); err != nil {
		return nil, err
	}
	if _, err := n.Write(n.ConfDir); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

func (o BridgeOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Leaks lists what pods left on the network (see CNILeaks).
func (n *BridgeNetwork) Leaks() []string { return CNILeaks(n.CNIConfig) }

// Stop deletes the bridge and, as BridgeOptions say, the iptables chains
// CNI added and libcni's cache.
func (n *BridgeNetwork) Stop() error {
	var errs []error
	if err := DeleteBridge(n.Bridge); err != nil {
		errs = append(errs, err)
	}
	if n.opts.Portmap {
		if removed, err := cniChains.RemoveNew(n.chainsBefore); err != nil {
			errs = append(errs, fmt.Errorf("remove iptables chains CNI added: %w", err))
		} else if len(removed) > 0 {
			n.opts.logf("removed iptables chains CNI plugins added: %s", strings.Join(removed, ", "))
		}
	}
	if n.opts.RemoveCNICache && !n.cacheExisted {
		// Only if empty: a result left in it is a leak to look at.
		os.Remove(filepath.Join(CNICacheDir, "results"))
		os.Remove(CNICacheDir)
	}
	return errors.Join(errs...)
}

// CreateBridge creates Linux bridge name holding address addr (the
// gateway, with the subnet's length) and sets it up. A bridge of that name
// left by an earlier run is deleted first (replaced says so). On error no
// bridge of that name is left.
//
// Netlink, not the ip command: the module already speaks netlink for pod
// taps (runtime/network), it needs no iproute2 on the host, and its errors
// are values rather than text to parse.
func CreateBridge(name string, addr netip.Prefix) (replaced bool, err error) {
	if old, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(old); err != nil {
			return false, fmt.Errorf("delete bridge %s left by an earlier run: %w", name, err)
		}
		replaced = true
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return replaced, fmt.Errorf("create bridge %s: %w", name, err)
	}
	ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipnet}); err != nil {
		netlink.LinkDel(br)
		return replaced, fmt.Errorf("add %s to bridge %s: %w", ipnet, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		netlink.LinkDel(br)
		return replaced, fmt.Errorf("set bridge %s up: %w", name, err)
	}
	return replaced, nil
}

// DeleteBridge deletes bridge name; one already gone is not an error.
func DeleteBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	} else if err != nil {
		return fmt.Errorf("find bridge %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// PickSubnet is the first /24 of 10.<octet>.0.0/16 that overlaps none of
// used.
func PickSubnet(octet byte, used []netip.Prefix) (netip.Prefix, error) {
next:
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, octet, byte(i), 0}), 24)
		for _, u := range used {
			if u.Overlaps(p) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in 10.%d.0.0/16", octet)
}

// HostPrefixes are the IPv4 routes (but the default route) and addresses
// of the host.
func HostPrefixes() ([]netip.Prefix, error) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	out := ParseRoutes(string(b))
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

// ParseRoutes reads /proc/net/route, whose addresses are in host
// (little-endian) byte order; the default route is left out.
func ParseRoutes(text string) []netip.Prefix {
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
