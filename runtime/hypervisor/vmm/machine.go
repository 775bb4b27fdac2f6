// Package vmm runs the host processes of one pod VM for a hypervisor
// driver: the VMM and its virtiofsd, each a child of the shim (package
// childproc) with its log and pid file; the watch for the first of them to
// die and the reason why; the wait until the VMM answers; and stopping both
// on every exit path of Start and Stop. A driver keeps what is its own: the
// VMM's arguments and its control channel (QEMU: QMP; Cloud Hypervisor:
// the REST API), which it plugs in through Spec.
//
// Process ownership: the VMM and virtiofsd run in their own process groups
// and get SIGKILL from the kernel when the shim dies (childproc), like
// Kata's shim letting the VMM die with it: a VM whose shim is gone has no
// one to talk to its agent, report its tasks or clean it up, so keeping it
// alive would only leak memory. After Start returns, the VM does not depend
// on Start's ctx.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/caplog"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/internal/ctxend"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

// LogTailLines is how many lines of a log an error message quotes.
const LogTailLines = 5

// VirtiofsdPidName is virtiofsd's pid file in the state dir.
const VirtiofsdPidName = "virtiofsd.pid"

// Spec is what a driver tells the Machine about its VMM.
type Spec struct {
	// Driver prefixes errors ("qemu: start sandbox ...") and names the
	// VMM in "<driver> exited during start".
	Driver   string
	ID       string
	StateDir string
	// LogName, PidName and ConsoleName are the VMM's log, pid file and
	// the guest console log, in StateDir.
	LogName, PidName, ConsoleName string
	// ConsoleMaxBytes caps ConsoleName and its one rotation,
	// ConsoleName.1, each (ConsolePipe); 0: caplog.DefaultMaxBytes.
	ConsoleMaxBytes int64
	// Sockets are files in StateDir that the VMM and virtiofsd bind:
	// removed before a start (a crashed shim may have left them) and
	// after a stop.
	Sockets []string
	// CleanExitNote says what an unasked exit with status 0 means.
	CleanExitNote string
	// Shutdown asks a running VMM to exit and waits a bounded time for
	// it; whatever is left is killed afterwards. Nil: killed at once.
	Shutdown func(ctx context.Context, vmm *childproc.Process)
	// Release closes the driver's own handles on the VMM (its control
	// channel, the agent's connection) once the processes are stopped.
	Release func()
}

type state int

const (
	stateCreated state = iota
	stateRunning
	stateStopped
)

// Machine is the process side of one VM: created, then running, then
// stopped, never restarted.
type Machine struct {
	spec Spec

	opMu sync.Mutex // serializes Start, Stop and the driver's Ops

	mu       sync.Mutex // guards the fields below
	state    state
	stopping bool
	exitErr  error
	vmm      *childproc.Process
	fsd      *virtiofsd.Daemon
	vsockd   *childproc.Process // vhost-device-vsock, see StartHybridVsock
	info     hypervisor.Info
	console  *caplog.Copier // nil without ConsolePipe

	done     chan struct{}
	doneOnce sync.Once
}

// New returns a Machine that has started nothing.
func New(spec Spec) *Machine {
	return &Machine{spec: spec, done: make(chan struct{})}
}

// Path is name in the VM's state dir.
func (m *Machine) Path(name string) string { return filepath.Join(m.spec.StateDir, name) }

// Start runs boot, the driver's own start (which calls PrepareDir,
// StartVirtiofsd, StartVMM and WaitReady as it needs), within timeout
// unless ctx ends earlier. On any failure everything started is stopped
// again, and the error is the VM's ExitError.
func (m *Machine) Start(ctx context.Context, timeout time.Duration, boot func(context.Context) error) (err error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	if st != stateCreated {
		return fmt.Errorf("%s: sandbox %s: Start called twice or after Stop", m.spec.Driver, m.spec.ID)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: start sandbox %s: %w", m.spec.Driver, m.spec.ID, err)
			m.mu.Lock()
			m.stopping = true // a failed start is not a death to report
			m.exitErr = err
			m.mu.Unlock()
			m.teardown(context.WithoutCancel(ctx))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := boot(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	m.state = stateRunning
	m.mu.Unlock()
	return nil
}

// PrepareDir creates the state dir and removes sockets a crashed shim left.
func (m *Machine) PrepareDir() error {
	if err := os.MkdirAll(m.spec.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, name := range m.spec.Sockets {
		os.Remove(m.Path(name))
	}
	return nil
}

// StartVirtiofsd starts virtiofsd (its socket listens before the VMM runs,
// see package virtiofsd) and records its pid.
func (m *Machine) StartVirtiofsd(cfg virtiofsd.Config) error {
	fsd, err := virtiofsd.Start(cfg)
	if err != nil {
		return err
	}
	m.adoptShareDaemon(fsd)
	return nil
}

// StartProxy9p starts QEMU's 9p proxy helper on cfg's share in place of
// virtiofsd (watched, stopped and reported as virtiofsd is) and returns
// the VMM's end of its socket.
func (m *Machine) StartProxy9p(cfg virtiofsd.Config) (*os.File, error) {
	fsd, vmmEnd, err := virtiofsd.StartProxy9p(cfg)
	if err != nil {
		return nil, err
	}
	m.adoptShareDaemon(fsd)
	return vmmEnd, nil
}

// adoptShareDaemon records the share's daemon, which StartVMM then
// watches, and its pid.
func (m *Machine) adoptShareDaemon(fsd *virtiofsd.Daemon) {
	m.mu.Lock()
	m.fsd = fsd
	m.mu.Unlock()
	writePid(m.Path(VirtiofsdPidName), fsd.Pid())
}

// StartVMM starts the VMM, records its pid and watches it and its helpers
// (virtiofsd, vhost-device-vsock) from now on (supervise). guestGone, if not nil, reports a guest that
// died while its VMM lives on (a reset), with why.
func (m *Machine) StartVMM(spec childproc.Spec, guestGone <-chan string) (*childproc.Process, error) {
	proc, err := childproc.Start(spec)
	if err != nil {
		return nil, err
	}
	writePid(m.Path(m.spec.PidName), proc.Pid())
	m.mu.Lock()
	m.vmm = proc
	helpers := helpers{fsd: m.fsd, vsockd: m.vsockd}
	m.mu.Unlock()
	go m.supervise(proc, helpers, guestGone)
	return proc, nil
}

// WaitReady calls try until the VMM answers on its control socket. The VMM
// creates the socket early in its start-up; polling begins at 1 ms and
// backs off to 16 ms, and stops at once if the VMM dies. An error other
// than a socket not there yet fails with failed as its prefix; the end of
// ctx with waiting, also when ctx ends during a try (the try's own error is
// then the consequence, not the cause, and is kept as the last try).
func (m *Machine) WaitReady(ctx context.Context, try func(context.Context) error, failed, waiting string) error {
	m.mu.Lock()
	proc := m.vmm
	m.mu.Unlock()
	delay := time.Millisecond
	for {
		err := try(ctx)
		if err == nil {
			return nil
		}
		if proc.Exited() {
			return m.Failure(fmt.Errorf("%s exited during start", m.spec.Driver))
		}
		if end := ctxend.Err(ctx); end != nil {
			return m.Failure(fmt.Errorf("%s: %w (last try: %v)", waiting, end, err))
		}
		if !notListening(err) {
			return m.Failure(fmt.Errorf("%s: %w", failed, err))
		}
		t := time.NewTimer(delay)
		select {
		case <-proc.Done():
			t.Stop()
			return m.Failure(fmt.Errorf("%s exited during start", m.spec.Driver))
		case <-ctx.Done():
			t.Stop()
			return m.Failure(fmt.Errorf("%s: %w", waiting, ctx.Err()))
		case <-t.C:
		}
		delay = min(2*delay, 16*time.Millisecond)
	}
}

// Stop stops the VMM (Spec.Shutdown, then SIGKILL) and virtiofsd and
// removes sockets and pid files. Logs stay. Idempotent; fine after the VM
// died or when it never started.
func (m *Machine) Stop(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if m.state == stateStopped {
		m.mu.Unlock()
		return nil
	}
	m.stopping = true
	m.mu.Unlock()
	return m.teardown(ctx)
}

// teardown stops everything Start may have started. Called with opMu held.
func (m *Machine) teardown(ctx context.Context) error {
	m.mu.Lock()
	proc, fsd, vsockd := m.vmm, m.fsd, m.vsockd
	m.state = stateStopped
	m.mu.Unlock()
	var errs []error
	if proc != nil && !proc.Exited() {
		if m.spec.Shutdown != nil {
			m.spec.Shutdown(ctx, proc)
		}
		proc.Kill() // no-op if it has exited
	}
	if fsd != nil {
		if err := fsd.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.stopHybridVsock(vsockd); err != nil {
		errs = append(errs, err)
	}
	if m.spec.Release != nil {
		m.spec.Release()
	}
	for _, name := range append(m.spec.Sockets, m.spec.PidName, VirtiofsdPidName) {
		if err := os.Remove(m.Path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	m.closeDone()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: stop sandbox %s: %w", m.spec.Driver, m.spec.ID, err)
	}
	return nil
}

// Op runs a driver operation (a resize) serialized with Start and Stop,
// only while the VM runs; otherwise it fails saying so.
func (m *Machine) Op(what string, op func() error) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if !m.Running() {
		return fmt.Errorf("%s: sandbox %s: %s: VM is not running", m.spec.Driver, m.spec.ID, what)
	}
	return op()
}

// Running reports whether Start succeeded and no Stop has begun.
func (m *Machine) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state == stateRunning
}

// CheckLive fails unless the VM is running and has not died; what names
// the operation in the error.
func (m *Machine) CheckLive(what string) error {
	if !m.Running() {
		return fmt.Errorf("%s: sandbox %s: %s: VM is not running", m.spec.Driver, m.spec.ID, what)
	}
	select {
	case <-m.done:
		return fmt.Errorf("%s: sandbox %s: %s: VM has exited: %w", m.spec.Driver, m.spec.ID, what, m.ExitError())
	default:
	}
	return nil
}

func (m *Machine) closeDone() { m.doneOnce.Do(func() { close(m.done) }) }

// Done is closed when the VMM or virtiofsd exits, the guest is gone, or
// the VM is stopped.
func (m *Machine) Done() <-chan struct{} { return m.done }

// ExitError says why Done was closed; nil after a requested Stop.
func (m *Machine) ExitError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exitErr
}

// Pids lists the live host processes: the VMM first, then virtiofsd and
// vhost-device-vsock.
func (m *Machine) Pids() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var pids []int
	if m.vmm != nil && !m.vmm.Exited() {
		pids = append(pids, m.vmm.Pid())
	}
	if m.fsd != nil {
		select {
		case <-m.fsd.Done():
		default:
			pids = append(pids, m.fsd.Pid())
		}
	}
	if m.vsockd != nil && !m.vsockd.Exited() {
		pids = append(pids, m.vsockd.Pid())
	}
	return pids
}

// SetInfo records what the driver chose (and, after a resize, the size).
func (m *Machine) SetInfo(info hypervisor.Info) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.info = info
}

// Info reports what Start chose and the current size; zero before Start.
func (m *Machine) Info() hypervisor.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info
}

// Virtiofsd is the running virtiofsd, nil if none was started.
func (m *Machine) Virtiofsd() *virtiofsd.Daemon {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fsd
}

// writePid records a helper's pid so that cleanup after a crashed shim
// (`shim delete`) can find strays; best effort.
func writePid(path string, pid int) {
	_ = os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o600)
}
