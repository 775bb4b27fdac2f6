package cloudhypervisor

import (
	"context"
	"fmt"
	"net"

	"github.com/podvm/podvm/runtime/hypervisor/hvsock"
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
	if err := v.Machine.CheckLive("dial agent"); err != nil {
		return nil, err
	}
	v.mu.Lock()
	l := v.launch
	v.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, v.driver.opts.AgentDialTimeout)
	defer cancel()
	h := hvsock.New(l.Path(vsockSocketName), v.driver.opts.AgentPort)
	h.Secret = l.Secret
	c, err := h.Dial(ctx, v.Machine.Done())
	if err != nil {
		return nil, fmt.Errorf("cloud-hypervisor: sandbox %s: dial agent: %w", v.cfg.ID, err)
	}
	return c, nil
}
