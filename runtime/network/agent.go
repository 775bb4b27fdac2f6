package network

import (
	"github.com/podvm/podvm/agent/api"
)

// AgentRequest is d in the form of the agent's ConfigureNetwork call.
func (d Description) AgentRequest() *api.ConfigureNetworkRequest {
	req := &api.ConfigureNetworkRequest{}
	for _, i := range d.Interfaces {
		ai := &api.Interface{Mac: i.MAC.String(), Name: i.Name, Mtu: i.MTU}
		for _, a := range i.Addresses {
			ai.Addresses = append(ai.Addresses, &api.IPAddress{Address: a.Addr().String(), PrefixLen: uint32(a.Bits())})
		}
		req.Interfaces = append(req.Interfaces, ai)
	}
	for _, r := range d.Routes {
		ar := &api.Route{Device: r.Device}
		if !r.IsDefault() {
			ar.Destination = r.Destination.String()
		}
		if r.Gateway.IsValid() {
			ar.Gateway = r.Gateway.String()
		}
		if r.Source.IsValid() {
			ar.Source = r.Source.String()
		}
		req.Routes = append(req.Routes, ar)
	}
	return req
}
