package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/factory"
)

// cloneVM starts the pod's VM as a clone of the template of its size and
// guest image (package factory saves it if it is missing). On error the
// sandbox has no VM and the caller boots one; what the clone's failed
// Start launched has been stopped by Start.
func (s *Sandbox) cloneVM(ctx context.Context, driver hypervisor.Driver, f config.Factory, cfg hypervisor.Config) error {
	saver, ok := driver.(hypervisor.TemplateSaver)
	if !ok {
		return fmt.Errorf("driver %s cannot save VM templates", driver.Name())
	}
	begin := time.Now()
	dir, err := factory.Templates{Dir: f.TemplateDir}.For(ctx, saver, cfg)
	if errors.Is(err, factory.ErrBusy) {
		return fmt.Errorf("%w (this pod does not wait for it)", err)
	}
	if err != nil {
		return fmt.Errorf("VM template: %w", err)
	}
	clone := cfg
	clone.Template = dir
	vm, err := driver.Create(ctx, clone)
	if err != nil {
		return err
	}
	s.vm = vm
	if err := vm.Start(ctx); err != nil {
		s.vm = nil
		return fmt.Errorf("start the clone of %s: %w", dir, err)
	}
	s.Timings.VMMStarted = time.Now()
	info := vm.Info()
	log.G(ctx).WithFields(log.Fields{
		"sandbox": s.ID, "template": dir, "vcpus": info.VCPUs, "memory_mib": info.MemoryMiB,
		"accelerator": info.Accelerator, "took": time.Since(begin).Round(time.Millisecond),
	}).Info("pod VM cloned from a VM template")
	return crash.NotePids(s.StateDir, vm.Pids())
}

// networkRequest is the pod network for the agent: for a clone, each NIC
// is found by the MAC the guest started with (the template's) and given
// the pod's.
func (s *Sandbox) networkRequest() *api.ConfigureNetworkRequest {
	req := s.net.Description().AgentRequest()
	macs := s.vm.Info().NICMACs
	for i, ifc := range req.Interfaces {
		if i < len(macs) && macs[i] != ifc.Mac {
			ifc.DeviceMac = macs[i]
		}
	}
	return req
}
