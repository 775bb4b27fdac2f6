package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/portforward"
)

// initGuest connects to the agent once it answers, starts watching the VM
// and the agent's channel, and sets the sandbox up in the guest: its
// hostname, shared filesystem, pod cgroup and pids limit, then its network.
func (s *Sandbox) initGuest(ctx context.Context, o Options, pidsLimit *int64) error {
	agent, err := s.connectAgent(ctx, time.Duration(o.Config.Runtime.AgentTimeout))
	if err != nil {
		return fmt.Errorf("sandbox %s: %w%s", o.ID, err, s.vmFailureDetail())
	}
	s.Agent = agent
	agent.OnHang(s.logConsoleTail)
	go s.watch(log.G(ctx))
	s.Timings.AgentReady = agent.ReadyAt

	if _, err := agent.CreateSandbox(ctx, &api.CreateSandboxRequest{
		SandboxId:  o.ID,
		Hostname:   o.Hostname,
		SharedFs:   &api.SharedFilesystem{Type: o.Config.Hypervisor.SharedFS, Tag: contract.SharedFSTag, MountPoint: contract.GuestSharedDir},
		PodCgroup:  o.GuestPodCgroup,
		PidsLimit:  pidsLimit,
		OciRuntime: o.Config.Hypervisor.GuestOCIRuntime,
	}); err != nil {
		return fmt.Errorf("agent CreateSandbox for %s: %w", o.ID, err)
	}
	if s.net != nil {
		if _, err := agent.ConfigureNetwork(ctx, s.networkRequest()); err != nil {
			return fmt.Errorf("configure the network of sandbox %s in the guest: %w", o.ID, err)
		}
		go s.startPortForward(context.WithoutCancel(ctx), o.NetNS)
	}
	return nil
}

// startPortForward makes the CRI's port-forward connections, which it makes
// in the pod's network namespace on the host, reach the guest
// (runtime/portforward). It runs after the sandbox is ready, off the pod
// start path; without it the pod still runs, so a failure is a warning.
func (s *Sandbox) startPortForward(ctx context.Context, nsPath string) {
	logger := log.G(ctx).WithField("sandbox", s.ID)
	f, err := portforward.Start(ctx, nsPath, portforward.Agent{Client: s.Agent})
	if err != nil {
		logger.WithError(err).Warn("port forwarding into the pod VM is off (kubectl port-forward to this pod will fail)")
		return
	}
	s.mu.Lock()
	if s.destroying {
		s.mu.Unlock()
		f.Close()
		return
	}
	s.forward = f
	s.mu.Unlock()
	logger.WithField("listener_port", f.Port()).Debug("port forwarding into the pod VM is ready")
}
