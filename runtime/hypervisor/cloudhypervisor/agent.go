package cloudhypervisor

import (
	"context"
	"fmt"
	"net"
)

// DialAgent connects to podvm-agent through the VM's hybrid vsock socket:
// CONNECT to the agent port, OK from the VMM, then the connection is the
// guest stream. While the guest boots (its vsock driver not up, or the
// agent not listening yet) the VMM refuses; DialAgent retries for at most
// Options.AgentDialTimeout, then fails with the last refusal, and callers
// retry (agentclient does). It gives up at once when the VM dies. Every
// call is a new guest stream, on which the shim proves it holds the VM's
// secret (contract.HostAuth); the agent serves one such session at a
// time, the newest.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	v.mu.Lock()
	state, l := v.state, v.launch
	v.mu.Unlock()
	if state != stateRunning {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: dial agent: VM is not running", v.cfg.ID)
	}
	select {
	case <-v.done:
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: dial agent: VM has exited: %w", v.cfg.ID, v.ExitError())
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, v.driver.opts.AgentDialTimeout)
	defer cancel()
	h := newHybridVsock(l.path(vsockSocketName), v.driver.opts.AgentPort)
	h.Secret = l.Secret
	c, err := h.Dial(ctx, v.done)
	if err != nil {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: dial agent: %w", v.cfg.ID, err)
	}
	return c, nil
}
