package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// Create makes the sandbox in three phases: prepare the host (state
// directory, share, network, cgroup), boot the VM, initialize the guest
// (agent connection, sandbox and network in the guest). On error nothing
// is left. First it sweeps away the state directories that crashed shims
// left on this host (crash.Sweep).
func Create(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	s, err := claim(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.Destroy(context.WithoutCancel(ctx))
		}
	}()
	pidsLimit, err := s.prepareHost(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := s.bootVM(ctx, o.Driver, s.vmConfig(o)); err != nil {
		return nil, err
	}
	if err := s.initGuest(ctx, o, pidsLimit); err != nil {
		return nil, err
	}
	s.Timings.Ready = time.Now()
	return s, nil
}

// claim makes the sandbox's state directory, taking it over from a
// crashed shim if one left it, and holds its lock.
func claim(ctx context.Context, o Options) (*Sandbox, error) {
	if strings.Contains(o.ID, "/") || o.ID == "" || o.ID == "." || o.ID == ".." {
		return nil, fmt.Errorf("sandbox id %q cannot name a directory", o.ID)
	}
	s := &Sandbox{ID: o.ID, StateDir: StateDir(o.Config, o.ID), rootfs: map[string]bool{}, done: make(chan struct{})}
	s.Timings.Begin = time.Now()
	s.share = share.At(s.StateDir)
	root := filepath.Dir(s.StateDir)
	crash.Sweep(ctx, root)
	if err := crash.Claim(ctx, s.StateDir); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	if err := os.Mkdir(s.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	lock, err := crash.LockNew(s.StateDir)
	if err != nil {
		os.RemoveAll(s.StateDir)
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	s.lock = lock
	return s, nil
}

// prepareHost sets up what the VM is handed on the host: the share, the
// taps in the pod's network namespace and the host cgroup. It returns the
// pod's pids limit (nil: none). Each is recorded for package crash before
// or as it is made.
func (s *Sandbox) prepareHost(ctx context.Context, o Options) (pidsLimit *int64, err error) {
	if err := s.share.SetUp(); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	if o.NetNS != "" {
		nw, err := network.Setup(o.NetNS)
		if err != nil {
			return nil, fmt.Errorf("pod network of sandbox %s: %w", o.ID, err)
		}
		s.net = nw
		if err := crash.NoteNetNS(s.StateDir, o.NetNS); err != nil {
			return nil, err
		}
	}
	if o.HostCgroup != "" {
		n, limited, err := s.setUpCgroup(ctx, o.HostCgroup)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
		}
		if limited {
			pidsLimit = &n
		}
	}
	return pidsLimit, nil
}

// setUpCgroup creates the sandbox's host cgroup and reads the pod's pids
// limit from its parent (0, false when there is none).
func (s *Sandbox) setUpCgroup(ctx context.Context, path string) (pidsLimit int64, limited bool, err error) {
	if err := crash.NoteCgroup(s.StateDir, path); err != nil {
		return 0, false, err
	}
	cg, err := hostcgroup.Create(path)
	if err != nil {
		return 0, false, err
	}
	s.cgroup = cg
	pod := hostcgroup.Parent(path)
	pidsLimit, limited, err = hostcgroup.PidsMax(pod)
	if err != nil {
		return 0, false, fmt.Errorf("pids limit of pod cgroup %s: %w", pod, err)
	}
	fields := log.Fields{"sandbox": s.ID, "host_cgroup": path}
	if limited {
		fields["pod_pids_limit"] = pidsLimit
	}
	log.G(ctx).WithFields(fields).Info("pod VM processes go into the pod's host cgroup")
	return pidsLimit, limited, nil
}

// vmConfig is the VM the prepared host asks for: the configured guest
// image and VMM settings, the pod's size, and what prepareHost made.
func (s *Sandbox) vmConfig(o Options) hypervisor.Config {
	h := o.Config.Hypervisor
	cfg := hypervisor.Config{
		ID:           o.ID,
		StateDir:     s.StateDir,
		KernelPath:   h.Kernel,
		InitrdPath:   h.Initrd,
		KernelParams: h.KernelParams,
		VCPUs:        o.Size.VCPUs,
		MemoryMiB:    o.Size.MemoryMiB,
		SharedDir:    s.share.SharedDir,
		SharedFS:     h.SharedFS,
		Transport:    transport(h.AgentTransport),
		Accelerator:  accelerator(h.Accelerator),
		Debug:        h.Debug,
	}
	if s.net != nil {
		cfg.Net = s.net.Devices()
	}
	if s.cgroup != nil { // a nil *hostcgroup.Cgroup would not be a nil interface
		cfg.Cgroup = s.cgroup
	}
	return cfg
}

func transport(v string) hypervisor.AgentTransport {
	if v == "auto" {
		return ""
	}
	return hypervisor.AgentTransport(v)
}

func accelerator(v string) hypervisor.Accelerator {
	if v == "auto" {
		return ""
	}
	return hypervisor.Accelerator(v)
}

// bootVM creates and starts the VM and records its processes for package
// crash. It is the one phase that needs the VMM: a VM factory (VMs booted
// ahead or restored from a template) would take its place, handing over a
// running VM and attaching cfg's share, network and cgroup to it.
func (s *Sandbox) bootVM(ctx context.Context, driver hypervisor.Driver, cfg hypervisor.Config) error {
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
