package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/sandbox/crash"
)

// vmConfig is the VM the prepared host asks for: the configured guest
// image and VMM settings, the pod's size, and what prepareHost made.
func (s *Sandbox) vmConfig(o Options) hypervisor.Config {
	h := o.Config.Hypervisor
	cfg := hypervisor.Config{
		ID:              o.ID,
		StateDir:        s.StateDir,
		KernelPath:      h.Kernel,
		InitrdPath:      h.Initrd,
		KernelParams:    h.KernelParams,
		VCPUs:           o.Size.VCPUs,
		MemoryMiB:       o.Size.MemoryMiB,
		SharedDir:       s.share.SharedDir,
		SharedFS:        h.SharedFS,
		AllowGuestSetID: h.AllowGuestSetID,
		Transport:       transport(h.AgentTransport),
		Accelerator:     accelerator(h.Accelerator),
		Debug:           h.Debug,
	}
	if s.net != nil {
		cfg.Net = s.net.Devices()
	}
	if s.cgroup != nil { // a nil *hostcgroup.Cgroup would not be a nil interface
		cfg.Cgroup = s.cgroup
	}
	return cfg
}

func transport(v string) contract.Transport {
	if v == "auto" {
		return ""
	}
	return contract.Transport(v)
}

func accelerator(v string) hypervisor.Accelerator {
	if v == "auto" {
		return ""
	}
	return hypervisor.Accelerator(v)
}

// bootVM creates and starts the VM and records its processes for package
// crash. It is the one phase that needs the VMM. With factory.mode =
// "template" the VM is first tried as a clone of the template of its size
// and guest image (clone.go); with "cache" it is first taken from the VMs
// booted ahead (cache.go). A failure there is logged and the VM boots as
// it does without a factory, unless a cached VM was already claimed.
func (s *Sandbox) bootVM(ctx context.Context, driver hypervisor.Driver, c *config.Config, cfg hypervisor.Config) error {
	f := c.Factory
	switch f.Mode {
	case config.FactoryTemplate:
		err := s.cloneVM(ctx, driver, f, cfg)
		if err == nil {
			return nil
		}
		log.G(ctx).WithError(err).WithField("sandbox", s.ID).Warn("pod VM not cloned from a VM template: booting it")
	case config.FactoryCache:
		err := s.takeCachedVM(ctx, driver, cfg, c.Hypervisor.GuestOCIRuntime)
		if err == nil || s.vm != nil {
			return err
		}
		log.G(ctx).WithError(err).WithField("sandbox", s.ID).Warn("pod VM not taken from the VM cache: booting it")
	}
	return s.startVM(ctx, driver, cfg)
}

// startVM creates and starts the VM cfg describes.
func (s *Sandbox) startVM(ctx context.Context, driver hypervisor.Driver, cfg hypervisor.Config) error {
	vm, err := driver.Create(ctx, cfg)
	if err != nil {
		return err
	}
	s.vm = vm
	if err := vm.Start(ctx); err != nil {
		return fmt.Errorf("start %s for sandbox %s: %w", driver.Name(), s.ID, err)
	}
	s.Timings.VMMStarted = time.Now()
	info := vm.Info()
	log.G(ctx).WithFields(log.Fields{
		"sandbox": s.ID, "driver": info.Driver, "vcpus": info.VCPUs, "memory_mib": info.MemoryMiB,
		"accelerator": info.Accelerator, "accelerator_reason": info.AccelReason,
		"transport": info.Transport, "transport_reason": info.TransportReason,
	}).Info("pod VM started")
	return crash.NotePids(s.StateDir, vm.Pids())
}
