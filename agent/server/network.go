package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/containerd/errdefs"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/network"
)

// ConfigureNetwork sets up the guest's interfaces and routes. Off the guest
// it is refused unless the service was given a network namespace of its
// own (tests): it would rename and readdress the host's devices.
func (s *Service) ConfigureNetwork(ctx context.Context, req *api.ConfigureNetworkRequest) (*api.Empty, error) {
	if s.cfg.Network == nil {
		return nil, fmt.Errorf("configure network: this agent has no network to configure (not the guest's PID 1, or no rtnetlink): %w", errdefs.ErrFailedPrecondition)
	}
	ifaces, routes, err := parseNetwork(req)
	if err != nil {
		return nil, err
	}
	return empty(s.cfg.Network.Configure(ifaces, routes))
}

// parseNetwork checks the request and turns its strings into addresses.
func parseNetwork(req *api.ConfigureNetworkRequest) ([]network.Interface, []network.Route, error) {
	ifaces := make([]network.Interface, 0, len(req.Interfaces))
	for _, in := range req.Interfaces {
		mac, err := net.ParseMAC(in.Mac)
		if err != nil {
			return nil, nil, fmt.Errorf("interface %s: MAC %q: %v: %w", in.Name, in.Mac, err, errdefs.ErrInvalidArgument)
		}
		if in.Name == "" || len(in.Name) > 15 {
			return nil, nil, fmt.Errorf("interface with MAC %s: name %q must be 1-15 bytes: %w", in.Mac, in.Name, errdefs.ErrInvalidArgument)
		}
		ifc := network.Interface{MAC: mac, Name: in.Name, MTU: int(in.Mtu)}
		if in.DeviceMac != "" {
			if ifc.DeviceMAC, err = net.ParseMAC(in.DeviceMac); err != nil {
				return nil, nil, fmt.Errorf("interface %s: device MAC %q: %v: %w", in.Name, in.DeviceMac, err, errdefs.ErrInvalidArgument)
			}
		}
		for _, a := range in.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				return nil, nil, fmt.Errorf("interface %s: address %q: %v: %w", in.Name, a.Address, err, errdefs.ErrInvalidArgument)
			}
			p, err := ip.Unmap().Prefix(int(a.PrefixLen))
			if err != nil {
				return nil, nil, fmt.Errorf("interface %s: address %s/%d: %v: %w", in.Name, a.Address, a.PrefixLen, err, errdefs.ErrInvalidArgument)
			}
			// The address itself, not the network Prefix computed.
			ifc.Addrs = append(ifc.Addrs, netip.PrefixFrom(ip.Unmap(), p.Bits()))
		}
		ifaces = append(ifaces, ifc)
	}
	routes := make([]network.Route, 0, len(req.Routes))
	for _, in := range req.Routes {
		var r network.Route
		var err error
		if in.Destination != "" {
			if r.Dst, err = netip.ParsePrefix(in.Destination); err != nil {
				return nil, nil, fmt.Errorf("route to %q: %v: %w", in.Destination, err, errdefs.ErrInvalidArgument)
			}
			r.Dst = r.Dst.Masked()
		}
		if in.Gateway != "" {
			if r.Gateway, err = netip.ParseAddr(in.Gateway); err != nil {
				return nil, nil, fmt.Errorf("route to %q: gateway %q: %v: %w", in.Destination, in.Gateway, err, errdefs.ErrInvalidArgument)
			}
			r.Gateway = r.Gateway.Unmap()
		}
		if in.Source != "" {
			if r.Source, err = netip.ParseAddr(in.Source); err != nil {
				return nil, nil, fmt.Errorf("route to %q: source %q: %v: %w", in.Destination, in.Source, err, errdefs.ErrInvalidArgument)
			}
			r.Source = r.Source.Unmap()
		}
		r.Device = in.Device
		routes = append(routes, r)
	}
	return ifaces, routes, nil
}
