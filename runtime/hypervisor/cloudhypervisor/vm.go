package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/vmsecret"
)

// VM is one Cloud Hypervisor VM with its virtiofsd. Besides hypervisor.VM
// it offers State, a vm.info health check. Its processes are run by the
// embedded vmm.Machine, as in the qemu driver; what is Cloud Hypervisor's
// own is here: the REST API and the event monitor. Stop shuts the VM and
// the VMM down over the API (shutdownVMM), kills the VMM if it has not gone
// within Options.StopTimeout, stops virtiofsd and removes sockets and pid
// files; logs stay. Done closes when cloud-hypervisor or virtiofsd exits,
// the guest resets, or the VM stops.
type VM struct {
	driver *Driver
	bin    string
	cfg    hypervisor.Config
	// accel is the accelerator chosen at Create (always kvm), accelWhy why.
	accel        hypervisor.Accelerator
	accelWhy     string
	*vmm.Machine // Stop, Done, ExitError, Pids, Info

	mu     sync.Mutex // guards the fields below
	launch launch
	api    *apiClient
	events *os.File // read end of the event monitor pipe
}

var _ hypervisor.VM = (*VM)(nil)

func newVM(d *Driver, bin string, cfg hypervisor.Config, acc hypervisor.Accelerator, accWhy string) *VM {
	v := &VM{driver: d, bin: bin, cfg: cfg, accel: acc, accelWhy: accWhy}
	v.Machine = vmm.New(vmm.Spec{
		Driver: Name, ID: cfg.ID, StateDir: cfg.StateDir,
		LogName: vmmLogName, PidName: vmmPidName,
		ConsoleName: consoleLogName, ConsoleMaxBytes: d.opts.ConsoleMaxBytes,
		Sockets:       []string{apiSocketName, apiLockName, vsockSocketName, virtiofsdSocketName},
		CleanExitNote: "the guest powered off, or the VMM was told to exit", // Cloud Hypervisor exits with it
		Shutdown:      v.shutdownVMM,
		Release:       v.release,
	})
	return v
}

// Start launches virtiofsd and cloud-hypervisor side by side (virtiofsd's
// socket listens before either runs, see package virtiofsd), waits for the
// API, then creates the VM (vm.create), hands it the taps (vm.add-net, fds
// by SCM_RIGHTS), boots it (vm.boot) and checks that it runs (vm.info). On
// any failure, or when ctx ends first, everything started is stopped again.
func (v *VM) Start(ctx context.Context) error {
	return v.Machine.Start(ctx, v.driver.opts.StartTimeout, v.boot)
}

// boot is Cloud Hypervisor's part of Start (vmm.Machine.Start runs it and
// stops everything if it fails): plan, virtiofsd, the VMM, then the API
// calls that create and boot the VM.
func (v *VM) boot(ctx context.Context) error {
	l, info, err := v.plan()
	if err != nil {
		return err
	}
	if err := v.Machine.PrepareDir(); err != nil {
		return err
	}
	if l.Secret, _, err = vmsecret.Create(v.cfg.StateDir); err != nil {
		return err
	}
	v.mu.Lock()
	v.launch = l
	v.mu.Unlock()
	if err := v.Machine.StartVirtiofsd(v.driver.opts.virtiofsdConfig(v.cfg)); err != nil {
		return err
	}
	api, err := v.startVMM(l, info)
	if err != nil {
		return err
	}
	ping := func(ctx context.Context) error { _, err := api.Ping(ctx); return err }
	if err := v.Machine.WaitReady(ctx, ping, "waiting for the API", "waiting for the API socket "+api.socket); err != nil {
		return err
	}
	if err := api.CreateVM(ctx, vmConfigFor(l)); err != nil {
		return v.Machine.Failure(fmt.Errorf("create the VM: %w", err))
	}
	for i, n := range l.Net {
		if err := api.AddNet(ctx, netConfigFor(i, n), v.cfg.Net[i].Tap); err != nil {
			return v.Machine.Failure(fmt.Errorf("add network device %d: %w", i, err))
		}
	}
	if err := api.BootVM(ctx); err != nil {
		return v.Machine.Failure(fmt.Errorf("boot the VM: %w", err))
	}
	vi, err := api.VMInfo(ctx)
	if err != nil {
		return v.Machine.Failure(fmt.Errorf("after boot: %w", err))
	}
	if vi.State != "Running" {
		return v.Machine.Failure(fmt.Errorf("after boot the VM is %q, not Running", vi.State))
	}
	return nil
}

// startVMM starts cloud-hypervisor with its event monitor on a pipe, whose
// guest resets end the VM like a death of the process, and its serial port
// on the console pipe.
func (v *VM) startVMM(l launch, info hypervisor.Info) (*apiClient, error) {
	evR, evW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("event monitor pipe: %w", err)
	}
	console, err := v.Machine.ConsolePipe()
	if err != nil {
		evR.Close()
		evW.Close()
		return nil, err
	}
	defer console.Close() // the child has its copy
	info.StartedAt = time.Now()
	api := newAPIClient(l.Path(apiSocketName), v.driver.opts.APITimeout)
	v.SetInfo(info)
	v.mu.Lock()
	v.api, v.events = api, evR
	v.mu.Unlock()
	dead := make(chan string, 1)
	_, err = v.Machine.StartVMM(childproc.Spec{
		Name:       "cloud-hypervisor for sandbox " + v.cfg.ID,
		Path:       v.bin,
		Args:       vmmArgs(l),
		LogPath:    l.Path(vmmLogName),
		ExtraFiles: []*os.File{evW, console}, // eventMonitorFD, consoleFD
		Cgroup:     v.cfg.Cgroup,
	}, dead)
	// The child has its copy; ours would keep the stream open after the
	// VMM exited.
	evW.Close()
	if err != nil {
		return nil, err // evR is closed by release
	}
	go watchEvents(evR, l.Path(eventsLogName), dead)
	return api, nil
}

// plan decides the kernel command line, the NICs and what Info reports.
func (v *VM) plan() (launch, hypervisor.Info, error) {
	cfg, o := v.cfg, v.driver.opts
	cmdline, err := kernelCmdline(cfg.Debug, cfg.KernelParams)
	if err != nil {
		return launch{}, hypervisor.Info{}, err
	}
	var nics []netLaunch
	for i, d := range cfg.Net {
		n, err := netLaunchFor(i, d)
		if err != nil {
			return launch{}, hypervisor.Info{}, err
		}
		nics = append(nics, n)
	}
	l := launch{
		Guest:    vmm.GuestOf(cfg, cmdline),
		MaxVCPUs: max(o.MaxVCPUs, cfg.VCPUs), HotplugMiB: o.MemoryHotplugMiB,
		Debug: cfg.Debug, Seccomp: !o.NoSeccomp,
		Net: nics,
	}
	info := hypervisor.Info{
		Driver:      Name,
		Accelerator: v.accel,
		AccelReason: v.accelWhy,
		Transport:   contract.TransportVsock,
		TransportReason: "hybrid vsock: CONNECT through " + l.Path(vsockSocketName) +
			" (Cloud Hypervisor proxies it to the guest; no /dev/vhost-vsock needed)",
		VCPUs:       cfg.VCPUs,
		MemoryMiB:   cfg.MemoryMiB,
		ConsolePath: l.Path(consoleLogName),
	}
	return l, info, nil
}

// shutdownVMM is the polite part of a stop (vmm.Spec.Shutdown), bounded by
// StopTimeout. Its errors do not matter: whatever is left is killed next.
// A VMM that does not answer uses up the budget on the first call and the
// others fail at once.
func (v *VM) shutdownVMM(ctx context.Context, proc *childproc.Process) {
	v.mu.Lock()
	api := v.api
	v.mu.Unlock()
	if api == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, v.driver.opts.StopTimeout)
	defer cancel()
	// No ACPI power-off and wait for the guest: its containers were
	// stopped through the agent already, and nothing of the pod's state
	// lives only in the guest.
	_ = api.ShutdownVM(ctx)
	_ = api.DeleteVM(ctx)
	if api.ShutdownVMM(ctx) == nil {
		select {
		case <-proc.Done():
		case <-ctx.Done():
		}
	}
}

// release closes the event monitor's pipe once the VMM is gone
// (vmm.Spec.Release).
func (v *VM) release() {
	v.mu.Lock()
	events := v.events
	v.mu.Unlock()
	if events != nil {
		events.Close()
	}
}

// Resize asks for vcpus and memoryMiB with vm.resize. Only what differs from
// the current size is sent. It needs room set aside at boot: vCPUs up to
// Options.MaxVCPUs, memory up to the boot size plus Options.MemoryHotplugMiB
// (ACPI hot-plug adds memory, it cannot take the boot memory away); beyond
// that the error wraps hypervisor.ErrNotSupported. The guest kernel must
// support CPU and memory hot-plug for the new size to be used.
func (v *VM) Resize(ctx context.Context, vcpus, memoryMiB uint32) error {
	return v.Machine.Op("resize", func() error { return v.resize(ctx, vcpus, memoryMiB) })
}

func (v *VM) resize(ctx context.Context, vcpus, memoryMiB uint32) error {
	v.mu.Lock()
	l, api := v.launch, v.api
	v.mu.Unlock()
	info := v.Info()
	req, err := resizeRequest(l, info, vcpus, memoryMiB)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor: sandbox %s: resize to %d vCPUs, %d MiB: %w", v.cfg.ID, vcpus, memoryMiB, err)
	}
	if req.DesiredVCPUs == nil && req.DesiredRAM == nil {
		return nil
	}
	if err := api.ResizeVM(ctx, req); err != nil {
		return fmt.Errorf("cloud-hypervisor: sandbox %s: resize to %d vCPUs, %d MiB: %w", v.cfg.ID, vcpus, memoryMiB, err)
	}
	info.VCPUs, info.MemoryMiB = vcpus, memoryMiB
	v.SetInfo(info)
	return nil
}

// resizeRequest checks a resize against the room the VM was booted with and
// returns vm.resize's body.
func resizeRequest(l launch, cur hypervisor.Info, vcpus, memoryMiB uint32) (vmResize, error) {
	var r vmResize
	if vcpus != cur.VCPUs {
		switch {
		case vcpus < 1:
			return r, errors.New("a VM needs at least 1 vCPU")
		case vcpus > l.MaxVCPUs:
			return r, fmt.Errorf("%w: the VM was booted with room for %d vCPUs (max_vcpus); set [hypervisor.cloud_hypervisor] max_vcpus for CPU hot-plug",
				hypervisor.ErrNotSupported, l.MaxVCPUs)
		}
		r.DesiredVCPUs = &vcpus
	}
	if memoryMiB != cur.MemoryMiB {
		limit := l.MemoryMiB + l.HotplugMiB
		switch {
		case memoryMiB < l.MemoryMiB:
			return r, fmt.Errorf("%w: memory cannot shrink below the %d MiB the VM booted with (hot-plug only adds)",
				hypervisor.ErrNotSupported, l.MemoryMiB)
		case memoryMiB > limit:
			return r, fmt.Errorf("%w: the VM was booted with room for %d MiB (boot %d + hot-plug %d); set [hypervisor.cloud_hypervisor] memory_hotplug_mib",
				hypervisor.ErrNotSupported, limit, l.MemoryMiB, l.HotplugMiB)
		}
		ram := int64(memoryMiB) * mib
		r.DesiredRAM = &ram
	}
	return r, nil
}

// State asks the VMM for the VM's state (Created, Running, Shutdown,
// Paused): a health check that the VMM still answers.
func (v *VM) State(ctx context.Context) (string, error) {
	v.mu.Lock()
	api := v.api
	v.mu.Unlock()
	if api == nil || !v.Machine.Running() {
		return "", fmt.Errorf("cloud-hypervisor: sandbox %s is not running", v.cfg.ID)
	}
	vi, err := api.VMInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("cloud-hypervisor: sandbox %s: %w", v.cfg.ID, err)
	}
	return vi.State, nil
}
