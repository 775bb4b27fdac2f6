package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/virtiofsd"
	"github.com/podvm/podvm/runtime/vmsecret"
)

// Timeouts of the lifecycle. Start's readiness bound applies when the
// caller's ctx has no earlier deadline.
const (
	startTimeout = 30 * time.Second
	quitTimeout  = 2 * time.Second // QMP quit, then SIGKILL
	logTailLines = 5
)

type vmState int

const (
	stateCreated vmState = iota
	stateRunning
	stateStopped
)

// VM is one QEMU microvm with its helpers. Besides hypervisor.VM it offers
// QueryStatus, a QMP health check.
//
// Process ownership: QEMU and virtiofsd are children of the shim, not
// daemons. They run in their own process groups and get SIGKILL from the
// kernel when the shim dies (childproc), like Kata's shim letting the VMM die
// with it: a VM whose shim is gone has no one to talk to its agent, report
// its tasks or clean it up, so keeping it alive would only leak memory.
// After Start returns, the VM does not depend on Start's ctx.
type VM struct {
	driver   *Driver
	qemuPath string
	cfg      hypervisor.Config
	// wantAccel is the accelerator as configured: auto, kvm or tcg.
	wantAccel hypervisor.Accelerator

	opMu sync.Mutex // serializes Start and Stop

	mu        sync.Mutex // guards the fields below
	state     vmState
	stopping  bool
	exitErr   error
	info      hypervisor.Info
	launch    launch
	qemu      *childproc.Process
	fsd       *virtiofsd.Daemon
	qmp       *qmpClient
	agentConn *serialConn
	// serialClosedAt is when the host last closed its end of the agent
	// port; the next dial waits serialHangupGrace after it.
	serialClosedAt time.Time
	// serialFailures counts handshakes failed in a row; each lengthens
	// the next one's timeout.
	serialFailures int
	// serialSessions and serialHandshakeFailures count, over the VM's
	// life, connections that reached a session and handshakes that
	// failed: the hang report says whether the host had reconnected.
	serialSessions, serialHandshakeFailures int

	done     chan struct{}
	doneOnce sync.Once
}

var _ hypervisor.VM = (*VM)(nil)

func newVM(d *Driver, qemuPath string, cfg hypervisor.Config, want hypervisor.Accelerator) *VM {
	return &VM{driver: d, qemuPath: qemuPath, cfg: cfg, wantAccel: want, done: make(chan struct{})}
}

// Start launches virtiofsd and QEMU side by side (virtiofsd's socket is
// listening before either runs, see the virtiofsd package) and returns once
// QMP reports the guest running. On any failure, or when ctx ends first,
// everything started is stopped again.
func (v *VM) Start(ctx context.Context) (err error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	state := v.state
	v.mu.Unlock()
	if state != stateCreated {
		return fmt.Errorf("qemu: sandbox %s: Start called twice or after Stop", v.cfg.ID)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("qemu: start sandbox %s: %w", v.cfg.ID, err)
			v.mu.Lock()
			v.stopping = true // a failed start is not a death to report
			v.exitErr = err
			v.mu.Unlock()
			v.teardown(context.WithoutCancel(ctx))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	l, info, err := v.plan()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(v.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if l.Secret, l.SecretPath, err = vmsecret.Create(v.cfg.StateDir); err != nil {
		return err
	}
	for _, name := range []string{qmpSocketName, agentSocketName, virtiofsdSocketName} {
		os.Remove(l.path(name)) // left over from a crashed shim
	}
	var extra []*os.File
	if l.Transport == contract.TransportVsock {
		f, cid, err := reserveCID(v.cfg.ID)
		if err != nil {
			return err
		}
		// QEMU gets its own copy; the CID lives as long as QEMU's handle.
		defer f.Close()
		l.VsockCID, l.VsockFD = cid, 3
		extra = append(extra, f)
	}
	// The taps stay owned by the caller (hypervisor.NetDevice): QEMU gets
	// its own copies of the fds, ours are not closed here.
	for i := range l.Net {
		l.Net[i].FD = 3 + len(extra)
		extra = append(extra, v.cfg.Net[i].Tap)
	}
	if l.SharedFS == contract.SharedFSVirtiofs {
		fsd, err := virtiofsd.Start(v.driver.opts.virtiofsdConfig(v.cfg, v.cfg.StateDir))
		if err != nil {
			return err
		}
		v.mu.Lock()
		v.fsd = fsd
		v.mu.Unlock()
		writePid(l.path(virtiofsdPidName), fsd.Pid())
	}
	info.StartedAt = time.Now()
	proc, err := childproc.Start(childproc.Spec{
		Name:       "qemu for sandbox " + v.cfg.ID,
		Path:       v.qemuPath,
		Args:       qemuArgs(l),
		LogPath:    l.path(qemuLogName),
		ExtraFiles: extra,
		Cgroup:     v.cfg.Cgroup,
	})
	if err != nil {
		return err
	}
	writePid(l.path(qemuPidName), proc.Pid())
	v.mu.Lock()
	v.qemu, v.launch, v.info = proc, l, info
	v.mu.Unlock()
	go v.supervise()

	qmp, err := v.connectQMP(ctx, l.path(qmpSocketName))
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.qmp = qmp
	v.mu.Unlock()
	st, err := qmp.QueryStatus(ctx)
	if err != nil {
		return v.startFailure(fmt.Errorf("query-status: %w", err))
	}
	if !st.Running {
		return v.startFailure(fmt.Errorf("guest is %q, not running", st.Status))
	}
	v.mu.Lock()
	v.state = stateRunning
	v.mu.Unlock()
	return nil
}

// plan decides accelerator, transport and kernel command line.
func (v *VM) plan() (launch, hypervisor.Info, error) {
	cfg := v.cfg
	acc, accWhy, err := v.driver.decideAccel(v.wantAccel)
	if err != nil {
		return launch{}, hypervisor.Info{}, err
	}
	transport, transportWhy := cfg.Transport, "configured"
	if transport == "" {
		if ok, why := vhostVsockUsable(); ok {
			transport, transportWhy = contract.TransportVsock, why
		} else {
			transport, transportWhy = contract.TransportSerial, why+": using virtio-serial"
		}
	}
	var tsc uint64
	if acc == hypervisor.AccelTCG {
		// Without it the guest calibrates by itself; slower, rarely stuck.
		tsc, _, _ = HostTSCKHz()
	}
	cmdline, err := kernelCmdline(acc, cfg.Debug, tsc, cfg.KernelParams)
	if err != nil {
		return launch{}, hypervisor.Info{}, err
	}
	nics, err := netLaunches(cfg.Net)
	if err != nil {
		return launch{}, hypervisor.Info{}, err
	}
	l := launch{
		ID: cfg.ID, StateDir: cfg.StateDir,
		Kernel: cfg.KernelPath, Initrd: cfg.InitrdPath, Cmdline: cmdline,
		VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB,
		Accel: acc, TBSizeMiB: v.driver.opts.TBSizeMiB,
		Seccomp:   !v.driver.opts.NoSeccomp,
		Transport: transport,
		SharedFS:  cfg.SharedFS, SharedDir: cfg.SharedDir,
		Net: nics,
	}
	info := hypervisor.Info{
		Driver:          v.driver.Name(),
		Accelerator:     acc,
		AccelReason:     accWhy,
		Transport:       transport,
		TransportReason: transportWhy,
		VCPUs:           cfg.VCPUs,
		MemoryMiB:       cfg.MemoryMiB,
		ConsolePath:     l.path(consoleLogName),
	}
	return l, info, nil
}

// connectQMP waits for QEMU's QMP socket. QEMU creates it early in its
// start-up and answers once its main loop runs, i.e. once the machine is
// built and the guest started; polling begins at 1 ms and backs off to
// 16 ms, and stops at once if QEMU dies.
func (v *VM) connectQMP(ctx context.Context, path string) (*qmpClient, error) {
	delay := time.Millisecond
	for {
		c, err := dialQMP(ctx, path)
		if err == nil {
			return c, nil
		}
		if v.qemu.Exited() {
			return nil, v.startFailure(errors.New("qemu exited during start"))
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, v.startFailure(fmt.Errorf("qmp: %w", err))
		}
		t := time.NewTimer(delay)
		select {
		case <-v.qemu.Done():
			t.Stop()
			return nil, v.startFailure(errors.New("qemu exited during start"))
		case <-ctx.Done():
			t.Stop()
			return nil, v.startFailure(fmt.Errorf("waiting for qmp: %w", ctx.Err()))
		case <-t.C:
		}
		delay = min(2*delay, 16*time.Millisecond)
	}
}

// startFailure adds what the processes said to a start error. If QEMU or
// virtiofsd died, their exit reasons say more than the symptom; QEMU's
// first, since virtiofsd exits whenever QEMU does.
func (v *VM) startFailure(err error) error {
	if v.qemu != nil && v.qemuExitedWithin(100*time.Millisecond) {
		return fmt.Errorf("%w: %w", err, v.qemuExitReason())
	}
	v.mu.Lock()
	fsd := v.fsd
	v.mu.Unlock()
	if fsd != nil {
		select {
		case <-fsd.Done():
			return fmt.Errorf("%w: %w", err, fsd.ExitReason())
		default:
		}
	}
	if tail := childproc.TailLines(v.launch.path(qemuLogName), logTailLines); tail != "" {
		return fmt.Errorf("%w; last lines of qemu.log: %s", err, tail)
	}
	return err
}

// qemuExitedWithin waits up to d for QEMU to be reaped: an error seen on a
// socket often means QEMU is exiting right now.
func (v *VM) qemuExitedWithin(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-v.qemu.Done():
		return true
	case <-t.C:
		return false
	}
}

// supervise waits for the first of QEMU and virtiofsd to exit. Unless a Stop
// asked for it, that is the VM's death: record why, close Done, and kill the
// survivor, which is useless now.
func (v *VM) supervise() {
	v.mu.Lock()
	fsd := v.fsd
	v.mu.Unlock()
	var fsdDone <-chan struct{}
	if fsd != nil {
		fsdDone = fsd.Done()
	}
	var reason error
	select {
	case <-v.qemu.Done():
		reason = v.qemuExitReason()
	case <-fsdDone:
		// virtiofsd exits by itself when QEMU goes; unless it was killed,
		// give QEMU a moment: if it is dying too, that is the cause.
		if !fsd.Killed() && v.qemuExitedWithin(100*time.Millisecond) {
			reason = v.qemuExitReason()
		} else {
			reason = fsd.ExitReason("the guest lost its shared directory, so the VM is stopped")
		}
	}
	v.mu.Lock()
	requested := v.stopping
	if !requested && v.exitErr == nil {
		v.exitErr = reason
	}
	v.mu.Unlock()
	v.closeDone()
	if !requested {
		v.qemu.Kill()
		if fsd != nil {
			fsd.Stop(context.Background())
		}
	}
}

// qemuExitReason explains QEMU's exit with the tails of its log and of the
// guest console. Exit status 0 unasked means the guest shut down, rebooted
// or panicked (panic=-1 reboots, -no-reboot exits); the console says which.
func (v *VM) qemuExitReason() error {
	var notes []string
	if v.qemu.WaitStatus() == "exit status 0" {
		notes = append(notes, "the guest shut down, rebooted or panicked")
	}
	err := v.qemu.ExitReason(logTailLines, notes...)
	if tail := childproc.TailLines(v.launch.path(consoleLogName), logTailLines); tail != "" {
		err = fmt.Errorf("%w; last lines of %s: %s", err, consoleLogName, tail)
	}
	return err
}

// Stop quits QEMU over QMP, kills it if it has not gone within quitTimeout,
// stops virtiofsd and removes sockets and pid files. Logs stay. Idempotent;
// fine after the VM died or when it never started.
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
	qemu, fsd, qmp := v.qemu, v.fsd, v.qmp
	v.state = stateStopped
	v.mu.Unlock()
	var errs []error
	if qemu != nil && !qemu.Exited() {
		if qmp != nil {
			qctx, cancel := context.WithTimeout(ctx, quitTimeout)
			if err := qmp.Quit(qctx); err == nil {
				select {
				case <-qemu.Done():
				case <-qctx.Done():
				}
			}
			cancel()
		}
		qemu.Kill() // no-op if it has quit
	}
	if qmp != nil {
		qmp.Close()
	}
	if fsd != nil {
		if err := fsd.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	v.mu.Lock()
	agentConn := v.agentConn
	v.mu.Unlock()
	if agentConn != nil {
		agentConn.Close()
	}
	dir := v.cfg.StateDir
	for _, name := range []string{qmpSocketName, agentSocketName, virtiofsdSocketName, qemuPidName, virtiofsdPidName} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	v.closeDone()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("qemu: stop sandbox %s: %w", v.cfg.ID, err)
	}
	return nil
}

func (v *VM) closeDone() { v.doneOnce.Do(func() { close(v.done) }) }

// Done is closed when QEMU or virtiofsd exits, or the VM is stopped.
func (v *VM) Done() <-chan struct{} { return v.done }

// ExitError says why Done was closed; nil after a requested Stop.
func (v *VM) ExitError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exitErr
}

// Pids lists the live host processes: QEMU first, then virtiofsd.
func (v *VM) Pids() []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	var pids []int
	if v.qemu != nil && !v.qemu.Exited() {
		pids = append(pids, v.qemu.Pid())
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

// Info reports what Start chose; zero before Start.
func (v *VM) Info() hypervisor.Info {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.info
}

// Resize is not offered: VMs are sized statically at sandbox creation
// (microvm has no memory or CPU hotplug in QEMU 7.2).
func (v *VM) Resize(ctx context.Context, vcpus, memoryMiB uint32) error {
	return hypervisor.ErrNotSupported
}

// QueryStatus asks QEMU for the run state ("running", "paused",
// "shutdown", ...): a health check that the VMM still answers.
func (v *VM) QueryStatus(ctx context.Context) (string, error) {
	v.mu.Lock()
	qmp := v.qmp
	v.mu.Unlock()
	if qmp == nil {
		return "", fmt.Errorf("qemu: sandbox %s is not running", v.cfg.ID)
	}
	st, err := qmp.QueryStatus(ctx)
	if err != nil {
		return "", fmt.Errorf("qemu: sandbox %s: %w", v.cfg.ID, err)
	}
	return st.Status, nil
}

// Diagnose describes the guest for a hang report (hypervisor.Diagnoser):
// the run state; for the serial channel, whether the guest has the agent's
// port open, the session's traffic and the port's virtqueues; the virtio-fs
// request queue and virtiofsd's threads; the local APIC timer, whose
// state says whether the guest still has a timer interrupt; and the vCPU
// registers, where HLT=1 says the guest is idle and a moving RIP that it
// is busy.
func (v *VM) Diagnose(ctx context.Context) string {
	v.mu.Lock()
	qmp, transport, sharedFS, fsd := v.qmp, v.launch.Transport, v.launch.SharedFS, v.fsd
	v.mu.Unlock()
	if qmp == nil {
		return "QEMU is not running"
	}
	var b strings.Builder
	if st, err := qmp.QueryStatus(ctx); err != nil {
		fmt.Fprintf(&b, "run state: %v\n", err)
	} else {
		fmt.Fprintf(&b, "run state: %s\n", st.Status)
	}
	if transport == contract.TransportSerial {
		open, err := qmp.ChardevFrontendOpen(ctx, agentChardevID)
		fmt.Fprintf(&b, "guest has the agent port open: %v (err %v)\n", open, err)
		v.mu.Lock()
		conn, sessions, failed := v.agentConn, v.serialSessions, v.serialHandshakeFailures
		v.mu.Unlock()
		fmt.Fprintf(&b, "agent connections: %d sessions begun, %d handshakes failed\n", sessions, failed)
		if conn != nil {
			// Bytes on the shim's socket that QEMU has not read yet: not
			// zero while the guest is idle means QEMU stopped passing the
			// host's bytes into the guest.
			n, err := unreadBytes(conn.Conn)
			fmt.Fprintf(&b, "bytes sent to the agent that QEMU has not read: %d (err %v)\n", n, err)
			fmt.Fprintf(&b, "agent session traffic after the handshake: %s\n", conn.traffic())
		}
		b.WriteString(qmp.agentQueues(ctx))
	}
	if sharedFS != contract.SharedFS9p {
		b.WriteString(qmp.sharedFSQueue(ctx))
		if fsd != nil {
			fmt.Fprintf(&b, "virtiofsd (pid %d) threads (tid:(name) state:waits in): %s\n", fsd.Pid(), threadStates(fsd.Pid()))
		}
	}
	b.WriteString(qmp.lapicTimer(ctx))
	if regs, err := qmp.hmp(ctx, "info registers"); err != nil {
		fmt.Fprintf(&b, "info registers: %v\n", err)
	} else {
		b.WriteString(regs)
	}
	return b.String()
}

// writePid records a helper's pid so that cleanup after a crashed shim
// (`shim delete`) can find strays; best effort.
func writePid(path string, pid int) {
	_ = os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

// unreadBytes is SIOCOUTQ of a unix socket: what was written to it and
// not yet read by the peer.
func unreadBytes(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}
