package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/vmsecret"
)

// Timeouts of the lifecycle. Start's readiness bound applies when the
// caller's ctx has no earlier deadline.
const (
	startTimeout = 30 * time.Second
	quitTimeout  = 2 * time.Second // QMP quit, then SIGKILL
)

// VM is one QEMU microvm with its helpers. Besides hypervisor.VM it offers
// QueryStatus, a QMP health check. Its processes (QEMU, virtiofsd) are run
// by the embedded vmm.Machine; what is QEMU's own is here: the command line
// and QMP. Stop quits QEMU over QMP (quit), kills it if it has not gone
// within quitTimeout, stops virtiofsd and removes sockets and pid files;
// logs stay. Done closes when QEMU or virtiofsd exits, or the VM stops.
type VM struct {
	driver   *Driver
	qemuPath string
	cfg      hypervisor.Config
	// wantAccel is the accelerator as configured: auto, kvm or tcg.
	wantAccel    hypervisor.Accelerator
	*vmm.Machine // Stop, Done, ExitError, Pids, Info

	mu        sync.Mutex // guards the fields below
	launch    launch
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
	// jailed is QEMU's jail while it runs; unjailed says why there is none.
	jailed   *jail
	unjailed string
	// tpl makes the VM a template being saved or a clone (template.go);
	// nil for a VM that boots.
	tpl *templateRole
	// handedOver is a clone's hand-over session, kept for the first
	// DialAgent (template_handover.go).
	handedOver *serialConn
}

var _ hypervisor.VM = (*VM)(nil)

func newVM(d *Driver, qemuPath string, cfg hypervisor.Config, want hypervisor.Accelerator) *VM {
	v := &VM{driver: d, qemuPath: qemuPath, cfg: cfg, wantAccel: want}
	v.Machine = vmm.New(vmm.Spec{
		Driver: "qemu", ID: cfg.ID, StateDir: cfg.StateDir,
		LogName: qemuLogName, PidName: qemuPidName,
		ConsoleName: consoleLogName, ConsoleMaxBytes: d.opts.ConsoleMaxBytes,
		Sockets:       []string{qmpSocketName, agentSocketName, virtiofsdSocketName},
		CleanExitNote: "the guest shut down, rebooted or panicked", // panic=-1 reboots, -no-reboot exits
		Shutdown:      v.quit,
		Release:       v.release,
	})
	return v
}

// Start launches virtiofsd and QEMU side by side (virtiofsd's socket is
// listening before either runs, see the virtiofsd package) and returns once
// QMP reports the guest running. On any failure, or when ctx ends first,
// everything started is stopped again.
func (v *VM) Start(ctx context.Context) error {
	return v.Machine.Start(ctx, startTimeout, v.boot)
}

// boot is QEMU's part of Start (vmm.Machine.Start runs it and stops
// everything if it fails): plan, helpers, QEMU, then QMP's "running".
func (v *VM) boot(ctx context.Context) error {
	l, info, ch, err := v.plan()
	if err != nil {
		return err
	}
	if err := v.Machine.PrepareDir(); err != nil {
		return err
	}
	if l.Secret, l.SecretPath, err = vmsecret.Create(v.cfg.StateDir); err != nil {
		return err
	}
	own := l.Secret
	if v.tpl.restoring() {
		// Until Handover the clone's agent admits the template's secret.
		l.Secret = v.tpl.secret
	}
	extra, release, err := v.passFiles(&l)
	if err != nil {
		return err
	}
	defer release()
	j, err := v.jail(l)
	if err != nil {
		return err
	}
	if j != nil {
		defer j.closeFiles()
	}
	if ch.HybridVsock != "" {
		if err := v.startHybridVsock(ctx, ch.HybridVsock, j); err != nil {
			return err
		}
	}
	if err := v.startQEMU(l, info, j, extra); err != nil {
		return err
	}
	var qmp *qmpClient
	dial := func(ctx context.Context) (err error) { qmp, err = dialQMP(ctx, l.Path(qmpSocketName)); return err }
	if err := v.Machine.WaitReady(ctx, dial, "qmp", "waiting for qmp"); err != nil {
		return err
	}
	v.mu.Lock()
	v.qmp = qmp
	v.mu.Unlock()
	// QMP answers from the main loop, which starts after machine init
	// created the vCPU threads: all are there now. Only TCG's vCPUs are
	// CPU-bound; a KVM vCPU sleeps in the host when its guest idles, and
	// SCHED_BATCH would only delay its wake-ups.
	if pids := v.Machine.Pids(); len(pids) > 0 && l.Accel == hypervisor.AccelTCG {
		if err := setBatchSlice(pids[0]); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox", v.cfg.ID).Warn("qemu: its threads keep the default CPU slice")
		}
	}
	if v.tpl.restoring() {
		return v.restore(ctx, qmp, own)
	}
	st, err := qmp.QueryStatus(ctx)
	if err != nil {
		return v.Machine.Failure(fmt.Errorf("query-status: %w", err))
	}
	if !st.Running {
		return v.Machine.Failure(fmt.Errorf("guest is %q, not running", st.Status))
	}
	return nil
}

// startQEMU starts virtiofsd, if the VM shares by virtio-fs, or the 9p
// proxy helper, for a clone, and QEMU:
// jailed if j is not nil, with its paths then rewritten to its fds.
func (v *VM) startQEMU(l launch, info hypervisor.Info, j *jail, extra []*os.File) error {
	if l.SharedFS == contract.SharedFSVirtiofs {
		if err := v.Machine.StartVirtiofsd(v.driver.opts.virtiofsdConfig(v.cfg, v.cfg.StateDir)); err != nil {
			return err
		}
		if j != nil {
			if err := j.grantSocket(l.Path(virtiofsdSocketName)); err != nil {
				return err
			}
		}
	}
	if l.Proxy9p {
		end, err := v.Machine.StartProxy9p(v.driver.opts.proxy9pConfig(v.cfg, v.cfg.StateDir))
		if err != nil {
			return err
		}
		defer end.Close() // QEMU has its own copy
		l.Proxy9pFD = 3 + len(extra)
		extra = append(slices.Clip(extra), end)
	}
	info.StartedAt = time.Now()
	v.mu.Lock()
	v.launch = l
	v.mu.Unlock()
	v.SetInfo(info)
	spec := childproc.Spec{
		Name:    "qemu for sandbox " + v.cfg.ID,
		Path:    v.qemuPath,
		LogPath: l.Path(qemuLogName),
		Cgroup:  v.cfg.Cgroup,
	}
	if j != nil {
		l, extra = j.pass(l, extra)
		spec.Jail = &j.cred
	}
	spec.Args, spec.ExtraFiles = qemuArgs(l), extra
	_, err := v.Machine.StartVMM(spec, nil)
	return err
}

// jail puts QEMU in a jail of its own (jail.go) unless jailReason says
// why not, which Info then reports. The uid is held until release.
func (v *VM) jail(l launch) (*jail, error) {
	if why := v.driver.jailReason(l); why != "" {
		v.mu.Lock()
		v.unjailed = why
		v.mu.Unlock()
		return nil, nil
	}
	j, err := newJail(v.driver.opts.jailRange(), v.qemuPath, l)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.jailed = j
	v.mu.Unlock()
	return j, nil
}

// passFiles lists the fds QEMU inherits (the vhost-vsock handle that
// holds the guest's CID, the taps, the console pipe) and sets their numbers in l. release
// closes what is ours once QEMU has its copies.
func (v *VM) passFiles(l *launch) (extra []*os.File, release func(), err error) {
	release = func() {}
	if l.Transport == contract.TransportVsock && !l.HybridVsock {
		f, cid, err := reserveCID(v.cfg.ID)
		if err != nil {
			return nil, nil, err
		}
		// QEMU gets its own copy; the CID lives as long as QEMU's handle.
		release = func() { f.Close() }
		l.VsockCID, l.VsockFD = cid, 3
		extra = append(extra, f)
	}
	// The taps stay owned by the caller (hypervisor.NetDevice): QEMU gets
	// its own copies of the fds, ours are not closed here.
	for i := range l.Net {
		if l.Net[i].Hub {
			continue
		}
		l.Net[i].FD = 3 + len(extra)
		extra = append(extra, v.cfg.Net[i].Tap)
	}
	console, err := v.Machine.ConsolePipe()
	if err != nil {
		release()
		return nil, nil, err
	}
	l.ConsoleFD = 3 + len(extra)
	extra = append(extra, console)
	releaseVsock := release
	release = func() { releaseVsock(); console.Close() }
	if v.tpl.restoring() {
		files, err := v.cloneFiles(l, 3+len(extra))
		if err != nil {
			release()
			return nil, nil, err
		}
		extra = append(extra, files...)
		releaseConsole := release
		release = func() { releaseConsole(); closeAll(files) }
	}
	return extra, release, nil
}

// cloneFiles are a clone's template files, QEMU's fds from first on: the
// device state it restores and the held RAM it maps
// (/proc/self/fd/N: the memfd has no other name).
func (v *VM) cloneFiles(l *launch, first int) ([]*os.File, error) {
	state, err := v.tpl.stateFile()
	if err != nil {
		return nil, err
	}
	ram, err := v.tpl.heldRAM(v.qemuPath)
	if err != nil {
		state.Close()
		return nil, err
	}
	l.IncomingFD = first
	l.MemPath = "/proc/self/fd/" + strconv.Itoa(first+1)
	return []*os.File{state, ram}, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// plan decides accelerator, agent channel and kernel command line.
func (v *VM) plan() (launch, hypervisor.Info, agentChannel, error) {
	cfg := v.cfg
	acc, accWhy, err := v.driver.decideAccel(v.wantAccel)
	if err != nil {
		return launch{}, hypervisor.Info{}, agentChannel{}, err
	}
	ch, err := v.driver.chooseChannel(cfg.Transport)
	if err != nil {
		return launch{}, hypervisor.Info{}, agentChannel{}, err
	}
	var tsc uint64
	if acc == hypervisor.AccelTCG {
		// Without it the guest calibrates by itself; slower, rarely stuck.
		tsc, _, _ = HostTSCKHz()
	}
	cmdline, err := kernelCmdline(acc, cfg.Debug, tsc, cfg.KernelParams)
	if err != nil {
		return launch{}, hypervisor.Info{}, agentChannel{}, err
	}
	nics, err := netLaunches(cfg.Net)
	if err != nil {
		return launch{}, hypervisor.Info{}, agentChannel{}, err
	}
	l := launch{
		Guest: vmm.GuestOf(cfg, cmdline),
		Accel: acc, TBSizeMiB: v.driver.opts.TBSizeMiB,
		Seccomp:   !v.driver.opts.NoSeccomp,
		Transport: ch.Transport, HybridVsock: ch.HybridVsock != "",
		SharedFS: cfg.SharedFS, SharedDir: cfg.SharedDir,
		Net: nics,
	}
	info := hypervisor.Info{
		Driver:          v.driver.Name(),
		Accelerator:     acc,
		AccelReason:     accWhy,
		Transport:       ch.Transport,
		TransportReason: ch.Why,
		VCPUs:           cfg.VCPUs,
		MemoryMiB:       cfg.MemoryMiB,
		ConsolePath:     l.Path(consoleLogName),
	}
	for _, n := range nics {
		info.NICMACs = append(info.NICMACs, n.MAC)
	}
	if v.tpl != nil {
		v.tpl.apply(&l, &info)
	}
	return l, info, ch, nil
}

// quit asks QEMU over QMP to exit and waits up to quitTimeout
// (vmm.Spec.Shutdown).
func (v *VM) quit(ctx context.Context, proc *childproc.Process) {
	v.mu.Lock()
	qmp := v.qmp
	v.mu.Unlock()
	if qmp == nil {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, quitTimeout)
	defer cancel()
	if err := qmp.Quit(qctx); err == nil {
		select {
		case <-proc.Done():
		case <-qctx.Done():
		}
	}
}

// release closes QMP and the agent's serial connection once QEMU is gone
// (vmm.Spec.Release).
func (v *VM) release() {
	v.mu.Lock()
	qmp, agentConn, j := v.qmp, v.agentConn, v.jailed
	v.jailed = nil
	v.mu.Unlock()
	j.release()
	if qmp != nil {
		qmp.Close()
	}
	if agentConn != nil {
		agentConn.Close()
	}
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
	qmp, transport, sharedFS := v.qmp, v.launch.Transport, v.launch.SharedFS
	v.mu.Unlock()
	fsd := v.Machine.Virtiofsd()
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
	b.WriteString(v.jailNote())
	b.WriteString(qmp.lapicTimer(ctx))
	if regs, err := qmp.hmp(ctx, "info registers"); err != nil {
		fmt.Fprintf(&b, "info registers: %v\n", err)
	} else {
		b.WriteString(regs)
	}
	return b.String()
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

// jailNote is the hang report's line on QEMU's jail.
func (v *VM) jailNote() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.jailed != nil {
		return fmt.Sprintf("QEMU is jailed as uid %d\n", v.jailed.cred.UID)
	}
	return fmt.Sprintf("QEMU is not jailed: %s\n", v.unjailed)
}
