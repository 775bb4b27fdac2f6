package network

import (
	"net"
	"net/netip"
)

// Description is the pod network as the guest must recreate it: what the
// shim tells the agent (ConfigureNetwork).
type Description struct {
	Interfaces []Interface
	// Routes are ordered so that each gateway is reachable through a route
	// before it: directly connected routes first.
	Routes []Route
}

// Interface is one pod interface.
type Interface struct {
	// Name is the interface's name in the pod namespace (eth0); the guest
	// gives its virtio-net device, found by MAC, the same name.
	Name string
	// MAC is the pod interface's MAC, which the guest device takes over.
	MAC net.HardwareAddr
	MTU uint32
	// Addresses are the interface's IPv4 and global IPv6 addresses with
	// their prefix lengths. IPv6 link-local addresses are left out: the
	// guest derives the same one from the same MAC.
	Addresses []netip.Prefix
}

// Route is one route of the pod namespace's main table.
type Route struct {
	// Destination is the zero Prefix for a default route.
	Destination netip.Prefix
	// Gateway is the zero Addr for a directly connected route.
	Gateway netip.Addr
	// Device is the Interface.Name the route leaves through.
	Device string
	// Source is the preferred source address, the zero Addr if none.
	Source netip.Addr
}

// IsDefault reports whether r is a default route.
func (r Route) IsDefault() bool { return !r.Destination.IsValid() || r.Destination.Bits() == 0 }
