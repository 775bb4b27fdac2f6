package network

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// podLink is one pod interface found in the namespace.
type podLink struct {
	link  netlink.Link
	iface Interface
}

// Inspect reads the pod interfaces and routes of the network namespace at
// nsPath without changing anything.
func Inspect(nsPath string) (Description, error) {
	n, err := openNS(nsPath)
	if err != nil {
		return Description{}, err
	}
	defer n.Close()
	links, routes, err := inspect(n)
	if err != nil {
		return Description{}, err
	}
	return describe(links, routes), nil
}

func describe(links []podLink, routes []Route) Description {
	d := Description{Routes: routes}
	for _, l := range links {
		d.Interfaces = append(d.Interfaces, l.iface)
	}
	return d
}

// inspect finds the pod interfaces: every link but loopback and our own taps
// that has an address. Links without one are skipped: the tunnel base
// devices (tunl0, sit0, gre0, ...) appear unconfigured in every namespace
// once their modules are loaded, and CNI configures what it creates.
func inspect(n *nsHandle) ([]podLink, []Route, error) {
	all, err := dump(n.nl.LinkList)
	if err != nil {
		return nil, nil, fmt.Errorf("list links in %s: %w", n.path, err)
	}
	var links []podLink
	var routes []Route
	for _, l := range all {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || isOurTap(l) {
			continue
		}
		addrs, err := addresses(n, l)
		if err != nil {
			return nil, nil, err
		}
		if len(addrs) == 0 {
			continue
		}
		// tc redirect hands whole Ethernet frames to the tap; an L3 device
		// (ipvlan l3, wireguard, tun) has none to hand over.
		if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
			return nil, nil, fmt.Errorf("interface %s (%s, link type %s) in %s has addresses but is not an Ethernet device: it cannot be mirrored into the VM",
				a.Name, l.Type(), a.EncapType, n.path)
		}
		links = append(links, podLink{link: l, iface: Interface{
			Name: a.Name, MAC: a.HardwareAddr, MTU: uint32(a.MTU), Addresses: addrs,
		}})
		rs, err := linkRoutes(n, l)
		if err != nil {
			return nil, nil, err
		}
		routes = append(routes, rs...)
	}
	// A gateway must be reachable when its route is added: connected
	// routes first, then the rest in the kernel's order.
	slices.SortStableFunc(routes, func(x, y Route) int {
		return cmp.Compare(btoi(x.Gateway.IsValid()), btoi(y.Gateway.IsValid()))
	})
	return links, routes, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func addresses(n *nsHandle, l netlink.Link) ([]netip.Prefix, error) {
	as, err := dump(func() ([]netlink.Addr, error) { return n.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("addresses of %s in %s: %w", l.Attrs().Name, n.path, err)
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, ok := addrOf(a.IP)
		if !ok || ip.IsLinkLocalUnicast() && ip.Is6() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out, nil
}

func linkRoutes(n *nsHandle, l netlink.Link) ([]Route, error) {
	rs, err := dump(func() ([]netlink.Route, error) { return n.nl.RouteList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("routes of %s in %s: %w", l.Attrs().Name, n.path, err)
	}
	var out []Route
	for _, r := range rs {
		if r.Type != unix.RTN_UNICAST {
			continue // blackhole, unreachable, ...: not about reaching the pod network
		}
		rt := Route{Device: l.Attrs().Name}
		if r.Dst != nil {
			ip, ok := addrOf(r.Dst.IP)
			if !ok {
				continue
			}
			ones, _ := r.Dst.Mask.Size()
			// fe80::/64 and multicast: the guest kernel makes its own.
			if ip.Is6() && (ip.IsLinkLocalUnicast() || ip.IsMulticast()) {
				continue
			}
			// A default route keeps the zero Destination, however
			// netlink spelled it (no RTA_DST, or 0.0.0.0/0).
			if ones > 0 {
				rt.Destination = netip.PrefixFrom(ip, ones).Masked()
			}
		}
		rt.Gateway, _ = addrOf(r.Gw)
		rt.Source, _ = addrOf(r.Src)
		out = append(out, rt)
	}
	return out, nil
}

// addrOf converts a netlink IP, unmapping IPv4 in IPv6 form.
func addrOf(ip net.IP) (netip.Addr, bool) {
	if len(ip) == 0 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}
