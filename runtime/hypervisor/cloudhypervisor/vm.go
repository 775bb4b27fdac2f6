package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/virtiofsd"
	"github.com/podvm/podvm/runtime/vmsecret"
)

const logTailLines = 5

type vmState int

const (
	stateCreated vmState = iota
	stateRunning
	stateStopped
)

// VM is one Cloud Hypervisor VM with its virtiofsd. Besides hypervisor.VM
// it offers State, a vm.info health check.
//
// Process ownership is as in the qemu driver: cloud-hypervisor and
// virtiofsd are children of the shim (package childproc), in their own
// process groups, killed by the kernel if the shim dies. After Start
// returns, the VM does not depend on Start's ctx.
type VM struct {
	driver *Driver
	bin    string
	cfg    hypervisor.Config
	// accel is the accelerator chosen at Create (always kvm), accelWhy why.
	accel    hypervisor.Accelerator
	accelWhy string

	opMu sync.Mutex // serializes Start, Stop and Resize

	mu       sync.Mutex // guards the fields below
	state    vmState
	stopping bool
	exitErr  error
	info     hypervisor.Info
	launch   launch
	vmm      *childproc.Process
	fsd      *virtiofsd.Daemon
	api      *apiClient
	events   *os.File // read end of the event monitor pipe

	done     chan struct{}
	doneOnce sync.Once
}

var _ hypervisor.VM = (*VM)(nil)

func newVM(d *Driver, bin string, cfg hypervisor.Config, acc hypervisor.Accelerator, accWhy string) *VM {
	return &VM{driver: d, bin: bin, cfg: cfg, accel: acc, accelWhy: accWhy, done: make(chan struct{})}
}

// Start launches virtiofsd and cloud-hypervisor side by side (virtiofsd's
// socket listens before either runs, see package virtiofsd), waits for the
// API, then creates the VM (vm.create), hands it the taps (vm.add-net, fds
// by SCM_RIGHTS), boots it (vm.boot) and checks that it runs (vm.info). On
// any failure, or when ctx ends first, everything started is stopped again.
func (v *VM) Start(ctx context.Context) (err error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	state := v.state
	v.mu.Unlock()
	if state != stateCreated {
		return fmt.Errorf("cloud-hypervisor: sandbox %s: Start called twice or after Stop", v.cfg.ID)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("cloud-hypervisor: start sandbox %s: %w", v.cfg.ID, err)
			v.mu.Lock()
			v.stopping = true // a failed start is not a death to report
			v.exitErr = err
			v.mu.Unlock()
			v.teardown(context.WithoutCancel(ctx))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, v.driver.opts.StartTimeout)
	defer cancel()

	l, info, err := v.plan()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(v.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if l.Secret, _, err = vmsecret.Create(v.cfg.StateDir); err != nil {
		return err
	}
	for _, name := range []string{apiSocketName, apiLockName, vsockSocketName, virtiofsdSocketName} {
		os.Remove(l.path(name)) // left over from a crashed shim
	}
	v.mu.Lock()
	v.launch = l
	v.mu.Unlock()

	fsd, err := virtiofsd.Start(v.driver.opts.virtiofsdConfig(v.cfg))
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.fsd = fsd
	v.mu.Unlock()
	writePid(l.path(virtiofsdPidName), fsd.Pid())

	evR, evW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("event monitor pipe: %w", err)
	}
	info.StartedAt = time.Now()
	proc, err := childproc.Start(childproc.Spec{
		Name:       "cloud-hypervisor for sandbox " + v.cfg.ID,
		Path:       v.bin,
		Args:       vmmArgs(l),
		LogPath:    l.path(vmmLogName),
		ExtraFiles: []*os.File{evW},
		Cgroup:     v.cfg.Cgroup,
	})
	// The child has its copy; ours would keep the stream open after the
	// VMM exited.
	evW.Close()
	if err != nil {
		evR.Close()
		return err
	}
	writePid(l.path(vmmPidName), proc.Pid())
	api := newAPIClient(l.path(apiSocketName), v.driver.opts.APITimeout)
	dead := make(chan string, 1)
	v.mu.Lock()
	v.vmm, v.info, v.api, v.events = proc, info, api, evR
	v.mu.Unlock()
	go watchEvents(evR, l.path(eventsLogName), dead)
	go v.supervise(proc, fsd, dead)

	if err := v.waitAPI(ctx, api, proc); err != nil {
		return err
	}
	if err := api.CreateVM(ctx, vmConfigFor(l)); err != nil {
		return v.startFailure(fmt.Errorf("create the VM: %w", err))
	}
	for i, n := range l.Net {
		if err := api.AddNet(ctx, netConfigFor(i, n), v.cfg.Net[i].Tap); err != nil {
			return v.startFailure(fmt.Errorf("add network device %d: %w", i, err))
		}
	}
	if err := api.BootVM(ctx); err != nil {
		return v.startFailure(fmt.Errorf("boot the VM: %w", err))
	}
	vi, err := api.VMInfo(ctx)
	if err != nil {
		return v.startFailure(fmt.Errorf("after boot: %w", err))
	}
	if vi.State != "Running" {
		return v.startFailure(fmt.Errorf("after boot the VM is %q, not Running", vi.State))
	}
	v.mu.Lock()
	v.state = stateRunning
	v.mu.Unlock()
	return nil
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
		ID: cfg.ID, StateDir: cfg.StateDir,
		Kernel: cfg.KernelPath, Initrd: cfg.InitrdPath, Cmdline: cmdline,
		VCPUs: cfg.VCPUs, MaxVCPUs: max(o.MaxVCPUs, cfg.VCPUs),
		MemoryMiB: cfg.MemoryMiB, HotplugMiB: o.MemoryHotplugMiB,
		Debug: cfg.Debug, Seccomp: !o.NoSeccomp,
		Net: nics,
	}
	info := hypervisor.Info{
		Driver:      Name,
		Accelerator: v.accel,
		AccelReason: v.accelWhy,
		Transport:   contract.TransportVsock,
		TransportReason: "hybrid vsock: CONNECT through " + l.path(vsockSocketName) +
			" (Cloud Hypervisor proxies it to the guest; no /dev/vhost-vsock needed)",
		VCPUs:       cfg.VCPUs,
		MemoryMiB:   cfg.MemoryMiB,
		ConsolePath: l.path(consoleLogName),
	}
	return l, info, nil
}

// waitAPI polls vmm.ping until the VMM answers. Cloud Hypervisor binds its
// API socket early in its start-up; polling begins at 1 ms and backs off to
// 16 ms, and stops at once if the process dies. A socket that accepts but
// never answers fails after the API timeout: the VMM is hung.
func (v *VM) waitAPI(ctx context.Context, api *apiClient, proc *childproc.Process) error {
	delay := time.Millisecond
	for {
		_, err := api.Ping(ctx)
		if err == nil {
			return nil
		}
		if proc.Exited() {
			return v.startFailure(errors.New("cloud-hypervisor exited during start"))
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return v.startFailure(fmt.Errorf("waiting for the API: %w", err))
		}
		t := time.NewTimer(delay)
		select {
		case <-proc.Done():
			t.Stop()
			return v.startFailure(errors.New("cloud-hypervisor exited during start"))
		case <-ctx.Done():
			t.Stop()
			return v.startFailure(fmt.Errorf("waiting for the API socket %s: %w", api.socket, ctx.Err()))
		case <-t.C:
		}
		delay = min(2*delay, 16*time.Millisecond)
	}
}

// startFailure adds what the processes said to a start error. If
// cloud-hypervisor or virtiofsd died, their exit reasons say more than the
// symptom; the VMM's first, since virtiofsd exits whenever its VMM does.
func (v *VM) startFailure(err error) error {
	v.mu.Lock()
	proc, fsd, l := v.vmm, v.fsd, v.launch
	v.mu.Unlock()
	if proc != nil && exitedWithin(proc, 100*time.Millisecond) {
		return fmt.Errorf("%w: %w", err, v.vmmExitReason(proc))
	}
	if fsd != nil {
		select {
		case <-fsd.Done():
			return fmt.Errorf("%w: %w", err, fsd.ExitReason())
		default:
		}
	}
	if tail := childproc.TailLines(l.path(vmmLogName), logTailLines); tail != "" {
		return fmt.Errorf("%w; last lines of %s: %s", err, vmmLogName, tail)
	}
	return err
}

// exitedWithin waits up to d for the process to be reaped: an error seen on
// a socket often means the VMM is exiting right now.
func exitedWithin(p *childproc.Process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.Done():
		return true
	case <-t.C:
		return false
	}
}

// supervise waits for the first of: cloud-hypervisor exiting, virtiofsd
// exiting, the guest resetting. Unless a Stop asked for it, that is the
// VM's death: record why, close Done, and kill what is left.
func (v *VM) supervise(proc *childproc.Process, fsd *virtiofsd.Daemon, dead <-chan string) {
	var fsdDone <-chan struct{}
	if fsd != nil {
		fsdDone = fsd.Done()
	}
	var reason error
	select {
	case <-proc.Done():
		reason = v.vmmExitReason(proc)
	case <-fsdDone:
		// virtiofsd exits by itself when its VMM goes; unless it was
		// killed, give the VMM a moment: if it is dying too, that is the
		// cause.
		if !fsd.Killed() && exitedWithin(proc, 100*time.Millisecond) {
			reason = v.vmmExitReason(proc)
		} else {
			reason = fsd.ExitReason("the guest lost its shared directory, so the VM is stopped")
		}
	case why := <-dead:
		reason = v.guestGone(proc, why)
	}
	v.mu.Lock()
	requested := v.stopping
	if !requested && v.exitErr == nil {
		v.exitErr = reason
	}
	v.mu.Unlock()
	v.closeDone()
	if !requested {
		proc.Kill()
		if fsd != nil {
			fsd.Stop(context.Background())
		}
	}
}

// vmmExitReason explains the VMM's exit with the tails of its log and of the
// guest console. Exit status 0 unasked means the guest powered off (Cloud
// Hypervisor exits with it).
func (v *VM) vmmExitReason(proc *childproc.Process) error {
	var notes []string
	if proc.WaitStatus() == "exit status 0" {
		notes = append(notes, "the guest powered off, or the VMM was told to exit")
	}
	return v.withConsoleTail(proc.ExitReason(logTailLines, notes...))
}

// guestGone is the death reason for a guest that reset while its VMM lives.
func (v *VM) guestGone(proc *childproc.Process, why string) error {
	return v.withConsoleTail(fmt.Errorf("%s: %s", proc.Name(), why))
}

func (v *VM) withConsoleTail(err error) error {
	v.mu.Lock()
	l := v.launch
	v.mu.Unlock()
	if tail := childproc.TailLines(l.path(consoleLogName), logTailLines); tail != "" {
		return fmt.Errorf("%w; last lines of %s: %s", err, consoleLogName, tail)
	}
	return err
}

// Stop shuts the VM and the VMM down over the API (vm.shutdown, vm.delete,
// vmm.shutdown), kills the VMM if it has not gone within
// Options.StopTimeout, stops virtiofsd and removes sockets and pid files.
// Logs stay. Idempotent; fine after the VM died or when it never started.
func (v *VM) Stop(ctx context.Context) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	if v.state == stateStopped {
		v.mu.Unlock()
		return nil
	}
	v.stopping = true
	v.mu.Unlock()
	return v.teardown(ctx)
}

// teardown stops everything Start may have started. Called with opMu held.
func (v *VM) teardown(ctx context.Context) error {
	v.mu.Lock()
	proc, fsd, api, events := v.vmm, v.fsd, v.api, v.events
	v.state = stateStopped
	v.mu.Unlock()
	var errs []error
	if proc != nil && !proc.Exited() {
		if api != nil {
			v.shutdownVMM(ctx, api, proc)
		}
		proc.Kill() // no-op if it has exited
	}
	if fsd != nil {
		if err := fsd.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if events != nil {
		events.Close()
	}
	for _, name := range []string{apiSocketName, apiLockName, vsockSocketName, virtiofsdSocketName, vmmPidName, virtiofsdPidName} {
		if err := os.Remove(filepath.Join(v.cfg.StateDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	v.closeDone()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cloud-hypervisor: stop sandbox %s: %w", v.cfg.ID, err)
	}
	return nil
}

// shutdownVMM is the polite part of teardown, bounded by StopTimeout. Its
// errors do not matter: whatever is left is killed next. A VMM that does
// not answer uses up the budget on the first call and the others fail at
// once.
func (v *VM) shutdownVMM(ctx context.Context, api *apiClient, proc *childproc.Process) {
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

func (v *VM) closeDone() { v.doneOnce.Do(func() { close(v.done) }) }

// Done is closed when cloud-hypervisor or virtiofsd exits, the guest
// resets, or the VM is stopped.
func (v *VM) Done() <-chan struct{} { return v.done }

// ExitError says why Done was closed; nil after a requested Stop.
func (v *VM) ExitError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitErr
}

// Pids lists the live host processes: cloud-hypervisor first, then
// virtiofsd.
func (v *VM) Pids() []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	var pids []int
	if v.vmm != nil && !v.vmm.Exited() {
		pids = append(pids, v.vmm.Pid())
	}
	if v.fsd != nil {
		select {
		case <-v.fsd.Done():
		default:
			pids = append(pids, v.fsd.Pid())
		}
	}
	return pids
}

// Info reports what Start chose and the current size; zero before Start.
func (v *VM) Info() hypervisor.Info {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.info
}

// Resize asks for vcpus and memoryMiB with vm.resize. Only what differs from
// the current size is sent. It needs room set aside at boot: vCPUs up to
// Options.MaxVCPUs, memory up to the boot size plus Options.MemoryHotplugMiB
// (ACPI hot-plug adds memory, it cannot take the boot memory away); beyond
// that the error wraps hypervisor.ErrNotSupported. The guest kernel must
// support CPU and memory hot-plug for the new size to be used.
func (v *VM) Resize(ctx context.Context, vcpus, memoryMiB uint32) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	state, l, info, api := v.state, v.launch, v.info, v.api
	v.mu.Unlock()
	if state != stateRunning {
		return fmt.Errorf("cloud-hypervisor: sandbox %s: resize: VM is not running", v.cfg.ID)
	}
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
	v.mu.Lock()
	v.info.VCPUs, v.info.MemoryMiB = vcpus, memoryMiB
	v.mu.Unlock()
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
	api, state := v.api, v.state
	v.mu.Unlock()
	if api == nil || state != stateRunning {
		return "", fmt.Errorf("cloud-hypervisor: sandbox %s is not running", v.cfg.ID)
	}
	vi, err := api.VMInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("cloud-hypervisor: sandbox %s: %w", v.cfg.ID, err)
	}
	return vi.State, nil
}

// writePid records a helper's pid so that cleanup after a crashed shim
// (`shim delete`) can find strays; best effort.
func writePid(path string, pid int) {
	_ = os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o600)
}
