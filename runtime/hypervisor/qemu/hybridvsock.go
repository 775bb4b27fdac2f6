package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor/hvsock"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/internal/childproc"
)

// The agent's channel, in order of preference (docs/design.md "Agent
// channel"):
//
//  1. hybrid vsock: a virtio-vsock device served by vhost-device-vsock
//     (vhost-user-vsock-device), whose host end is a unix socket in the
//     sandbox's 0700 state dir, reachable by the shim and no one else;
//     needs no /dev/vhost-vsock.
//  2. virtio-serial, when vhost-device-vsock is not found: a unix socket
//     in the state dir too, but one connection at a time.
//  3. kernel vhost-vsock only when transport = "vsock" is configured and
//     vhost-device-vsock is missing: AF_VSOCK is not network-namespaced,
//     so every process on the node can connect to the guest's CID; only
//     the per-VM secret (contract.HostAuth) stands in the way.

// agentChannel is the transport decided for one VM.
type agentChannel struct {
	Transport contract.Transport
	// HybridVsock is vhost-device-vsock's binary when the vsock transport
	// goes through it; empty for kernel vhost-vsock and for serial.
	HybridVsock string
	Why         string
}

// chooseChannel applies the order above to the configured transport.
func (d *Driver) chooseChannel(configured contract.Transport) (agentChannel, error) {
	if configured == contract.TransportSerial {
		return agentChannel{Transport: contract.TransportSerial, Why: "configured"}, nil
	}
	bin, err := vmm.FindHybridVsock(d.opts.VhostDeviceVsockPath)
	if err == nil {
		return agentChannel{Transport: contract.TransportVsock, HybridVsock: bin,
			Why: "hybrid vsock through " + bin + " (host end a unix socket in the state dir)"}, nil
	}
	if d.opts.VhostDeviceVsockPath != "" {
		return agentChannel{}, err
	}
	if configured == "" {
		return agentChannel{Transport: contract.TransportSerial,
			Why: err.Error() + ": using virtio-serial (kernel vhost-vsock is reachable from every process on the node)"}, nil
	}
	if ok, why := vhostVsockUsable(); !ok {
		return agentChannel{}, fmt.Errorf("agent transport vsock is configured but %v and %s: install vhost-device-vsock, load vhost_vsock or use transport serial", err, why)
	}
	return agentChannel{Transport: contract.TransportVsock,
		Why: "configured; " + err.Error() + ": kernel vhost-vsock, reachable by AF_VSOCK from every process on the node"}, nil
}

// hybridVsockUID is what vhost-device-vsock runs as when the shim is root
// and QEMU is not jailed: nobody (gid too), with no capabilities. It needs
// none: it serves guest memory QEMU shares with it and two sockets in its
// own directory.
const hybridVsockUID = 65534

// startHybridVsock starts the VM's vhost-device-vsock (vmm.Machine
// supervises and stops it) as hybridVsockIdentity says.
func (v *VM) startHybridVsock(ctx context.Context, bin string, j *jail) error {
	return v.Machine.StartHybridVsock(ctx, vmm.HybridVsockConfig{
		Name:   "vhost-device-vsock for sandbox " + v.cfg.ID,
		Binary: bin,
		Jail:   hybridVsockIdentity(j, os.Geteuid() == 0),
		Cgroup: v.cfg.Cgroup,
	})
}

// hybridVsockIdentity is the uid vhost-device-vsock runs as. With QEMU
// jailed, it is the VM's jail uid: one uid per pod, so one pod's daemon
// cannot signal or ptrace another's, and the jailed QEMU (same uid) can
// reach its 0700 vsock/ directory. Otherwise nobody when the shim is root,
// and the shim's own user (nil) when it is not.
func hybridVsockIdentity(j *jail, root bool) *childproc.Jail {
	switch {
	case j != nil:
		return &childproc.Jail{UID: j.cred.UID, GID: j.cred.GID}
	case root:
		return &childproc.Jail{UID: hybridVsockUID, GID: hybridVsockUID}
	}
	return nil
}

// hybridDialTimeout bounds one DialAgent over hybrid vsock, retries
// included: vhost-device-vsock refuses (closes) while the guest boots, and
// the caller retries after that.
const hybridDialTimeout = 5 * time.Second

// dialHybrid connects through vhost-device-vsock's socket: CONNECT, OK,
// then the proof of the VM's secret (contract.HostAuth). Every call is a
// new guest stream; the agent serves the newest session.
// The pause between CONNECTs is hvsock's, up to 100 ms (docs/design.md,
// "Agent channel", has a hang seen with a shorter one).
func (v *VM) dialHybrid(ctx context.Context, l launch) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, hybridDialTimeout)
	defer cancel()
	h := hvsock.New(l.Path(vmm.HybridVsockAgentSocket), contract.VsockPort)
	h.Secret = l.Secret
	c, err := h.Dial(ctx, v.Machine.Done())
	if err != nil {
		return nil, fmt.Errorf("qemu: sandbox %s: dial agent: %w", v.cfg.ID, err)
	}
	return c, nil
}
