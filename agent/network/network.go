// Package network gives the guest the pod's network configuration: each
// virtio-net device, found by the MAC of the pod interface it mirrors (or
// by the MAC it has before it is given that one: a VM cloned from a
// template keeps the template's), gets that interface's name, MAC, MTU and
// addresses, and the guest gets the pod's
// routes. Every pod container uses the guest's root network namespace.
//
// Configure may be called again with the same configuration (a shim that
// retries): addresses and routes are replaced, never added twice, and a
// device already carrying its name is not taken down.
package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Interface is one guest interface to set up.
type Interface struct {
	MAC   net.HardwareAddr
	Name  string
	Addrs []netip.Prefix
	MTU   int // 0 keeps the device's
	// DeviceMAC, if set, is the device's MAC before it is given MAC: a
	// VM cloned from a template starts with the template's.
	DeviceMAC net.HardwareAddr
}

// Route is one route to install.
type Route struct {
	Dst     netip.Prefix // invalid: the default route
	Gateway netip.Addr   // invalid: directly connected
	Device  string       // "" lets the kernel pick by gateway
	Source  netip.Addr   // invalid: none
}

func (r Route) String() string {
	var b strings.Builder
	if r.Dst.IsValid() {
		b.WriteString(r.Dst.String())
	} else {
		b.WriteString("default")
	}
	if r.Gateway.IsValid() {
		b.WriteString(" via " + r.Gateway.String())
	}
	if r.Device != "" {
		b.WriteString(" dev " + r.Device)
	}
	if r.Source.IsValid() {
		b.WriteString(" src " + r.Source.String())
	}
	return b.String()
}

// Configurer applies configurations through one rtnetlink handle, one at a
// time.
type Configurer struct {
	mu sync.Mutex
	h  *netlink.Handle
}

// New returns a Configurer working through h, which fixes the network
// namespace.
func New(h *netlink.Handle) *Configurer { return &Configurer{h: h} }

// Open returns a Configurer for the caller's network namespace. It asks
// only for rtnetlink: the guest kernel may lack the other families.
func Open() (*Configurer, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	return New(h), nil
}

// Configure sets up ifaces, then installs routes.
func (c *Configurer) Configure(ifaces []Interface, routes []Route) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	links, err := c.find(ifaces)
	if err != nil {
		return err
	}
	if err := c.setMACs(ifaces, links); err != nil {
		return err
	}
	if err := c.rename(ifaces, links); err != nil {
		return err
	}
	for i, ifc := range ifaces {
		if err := c.setup(ifc, links[i]); err != nil {
			return err
		}
	}
	return c.addRoutes(routes)
}

// find returns the device of each interface, by MAC, else by DeviceMAC
// (a retry finds the device by the MAC it was already given).
func (c *Configurer) find(ifaces []Interface) ([]netlink.Link, error) {
	all, err := c.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	links := make([]netlink.Link, len(ifaces))
	for i, ifc := range ifaces {
		for j := range i {
			if ifaces[j].Name == ifc.Name || slices.Equal(ifaces[j].MAC, ifc.MAC) {
				return nil, fmt.Errorf("interface %s (%s): name or MAC given twice: %w", ifc.Name, ifc.MAC, errdefs.ErrInvalidArgument)
			}
		}
		links[i] = byMAC(all, ifc.MAC)
		if links[i] == nil && len(ifc.DeviceMAC) > 0 {
			links[i] = byMAC(all, ifc.DeviceMAC)
		}
		if links[i] == nil {
			return nil, fmt.Errorf("interface %s: no device with MAC %s: %w", ifc.Name, ifc.MAC, errdefs.ErrNotFound)
		}
	}
	return links, nil
}

func byMAC(links []netlink.Link, mac net.HardwareAddr) netlink.Link {
	for _, l := range links {
		if slices.Equal(l.Attrs().HardwareAddr, mac) {
			return l
		}
	}
	return nil
}

// setMACs gives each device found by DeviceMAC its MAC. A device must be
// down for that (virtio-net has no live address change without the
// control queue's feature); rename and setup bring it up again.
func (c *Configurer) setMACs(ifaces []Interface, links []netlink.Link) error {
	for i, ifc := range ifaces {
		l := links[i]
		if slices.Equal(l.Attrs().HardwareAddr, ifc.MAC) {
			continue
		}
		if err := c.h.LinkSetDown(l); err != nil {
			return fmt.Errorf("interface %s (device %s): set down: %w", ifc.Name, l.Attrs().Name, err)
		}
		if err := c.h.LinkSetHardwareAddr(l, ifc.MAC); err != nil {
			return fmt.Errorf("interface %s (device %s): set MAC %s: %w", ifc.Name, l.Attrs().Name, ifc.MAC, err)
		}
	}
	return nil
}

// rename gives each device its name. A device must be down to be renamed.
// Renames go through temporary names so that devices may swap names (the
// kernel called the second device eth0, the pod wants it as net1).
func (c *Configurer) rename(ifaces []Interface, links []netlink.Link) error {
	var moved []int
	for i, ifc := range ifaces {
		l := links[i]
		if l.Attrs().Name == ifc.Name {
			continue
		}
		if err := c.h.LinkSetDown(l); err != nil {
			return fmt.Errorf("interface %s (device %s): set down: %w", ifc.Name, l.Attrs().Name, err)
		}
		tmp := fmt.Sprintf("podvm-tmp%d", i)
		if err := c.h.LinkSetName(l, tmp); err != nil {
			return fmt.Errorf("interface %s (device %s): rename to %s: %w", ifc.Name, l.Attrs().Name, tmp, err)
		}
		moved = append(moved, i)
	}
	for _, i := range moved {
		if err := c.h.LinkSetName(links[i], ifaces[i].Name); err != nil {
			return fmt.Errorf("interface %s (MAC %s): rename: %w", ifaces[i].Name, ifaces[i].MAC, err)
		}
	}
	return nil
}

// setup sets the MTU, adds the addresses and brings the device up.
func (c *Configurer) setup(ifc Interface, l netlink.Link) error {
	if ifc.MTU > 0 && l.Attrs().MTU != ifc.MTU {
		if err := c.h.LinkSetMTU(l, ifc.MTU); err != nil {
			return fmt.Errorf("interface %s: set MTU %d: %w", ifc.Name, ifc.MTU, err)
		}
	}
	for _, p := range ifc.Addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			// The host already owns the address on the pod's side;
			// duplicate detection would only delay its use.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := c.h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("interface %s: add address %s: %w", ifc.Name, p, err)
		}
	}
	if err := c.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("interface %s: set up: %w", ifc.Name, err)
	}
	return nil
}

// addRoutes installs directly connected routes first, since a gateway must
// be reachable through one before a route via it can be added.
func (c *Configurer) addRoutes(routes []Route) error {
	ordered := slices.Clone(routes)
	slices.SortStableFunc(ordered, func(a, b Route) int {
		return boolInt(a.Gateway.IsValid()) - boolInt(b.Gateway.IsValid())
	})
	for _, r := range ordered {
		nr, err := c.netlinkRoute(r)
		if err != nil {
			return fmt.Errorf("route %s: %w", r, err)
		}
		if err := c.h.RouteReplace(nr); err != nil {
			return fmt.Errorf("route %s: %w", r, err)
		}
	}
	return nil
}

func (c *Configurer) netlinkRoute(r Route) (*netlink.Route, error) {
	nr := &netlink.Route{Scope: netlink.SCOPE_UNIVERSE}
	dst := r.Dst
	if !dst.IsValid() {
		// The default route of the gateway's (or source's) family.
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Gateway.Is6() || r.Source.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	}
	nr.Dst = ipNet(dst)
	if r.Gateway.IsValid() {
		if r.Gateway.Is4() != dst.Addr().Is4() {
			return nil, fmt.Errorf("gateway and destination of different families: %w", errdefs.ErrInvalidArgument)
		}
		nr.Gw = r.Gateway.AsSlice()
	} else {
		if r.Device == "" {
			return nil, fmt.Errorf("neither gateway nor device: %w", errdefs.ErrInvalidArgument)
		}
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Source.IsValid() {
		nr.Src = r.Source.AsSlice()
	}
	if r.Device != "" {
		l, err := c.h.LinkByName(r.Device)
		if err != nil {
			var notFound netlink.LinkNotFoundError
			if errors.As(err, &notFound) {
				return nil, fmt.Errorf("device %s: %w", r.Device, errdefs.ErrNotFound)
			}
			return nil, fmt.Errorf("device %s: %w", r.Device, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
