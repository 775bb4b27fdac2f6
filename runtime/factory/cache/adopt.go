package cache

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
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/jailuid"
	"github.com/podvm/podvm/runtime/vmsecret"
)

// hangupGrace is how long after a host hung up the virtio-serial channel
// the next connection waits, so that the agent has seen the hang-up (the
// QEMU driver's serialHangupGrace).
const hangupGrace = 500 * time.Millisecond

// stopWait bounds how long Stop waits for the killed processes to end.
const stopWait = 5 * time.Second

// Claimed is a VM a sandbox took from the pool: a hypervisor.VM over
// pidfds of processes that are not the shim's children (the daemon is
// their parent and reaps them).
type Claimed struct {
	dir    string
	e      Entry
	pidfds []int // VMM first, as e.Pids
	lease  *os.File
	// adopted is when the pod took the VM (its claim's rename was just
	// before): Info's StartedAt, the start of this pod's VM. The daemon
	// spawned the VMM earlier (e.Booted is when it was ready), and its
	// wait in the pool is no part of the pod's start.
	adopted time.Time

	done     chan struct{}
	stopOnce sync.Once
	stopErr  error

	mu       sync.Mutex
	exitErr  error
	stopping bool
	dialing  bool
	closedAt time.Time
}

// Adopt takes over the claimed VM whose directory is now dir: a pidfd of
// each of its processes (each checked to still be the VM's), a copy of the
// daemon's lock on the VMM's jail uid (so that the uid stays held while
// the VM lives, whoever dies first), and a watch on them.
func Adopt(dir string, e Entry) (_ *Claimed, err error) {
	c := &Claimed{dir: dir, e: e, adopted: time.Now(), done: make(chan struct{}), closedAt: e.Booted}
	defer func() {
		if err != nil {
			c.closeFds()
		}
	}()
	for _, pid := range e.Pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return nil, fmt.Errorf("VM cache: pidfd of %d: %w", pid, err)
		}
		c.pidfds = append(c.pidfds, fd)
		if !namesVM(pid, e.ID) || unix.PidfdSendSignal(fd, 0, nil, 0) != nil {
			return nil, fmt.Errorf("VM cache: process %d is no longer cached VM %s's", pid, e.ID)
		}
	}
	if len(c.pidfds) == 0 {
		return nil, fmt.Errorf("VM cache: cached VM %s lists no process", e.ID)
	}
	if c.lease, err = takeLease(e.Keeper, e.Pids[0]); err != nil {
		return nil, err
	}
	go c.watch()
	return c, nil
}

// takeLease copies the keeper's fd of the jail uid lock of process vmm
// (nil when the VMM runs as root: not jailed).
func takeLease(keeper, vmm int) (*os.File, error) {
	uid, err := processUID(vmm)
	if err != nil || uid == 0 {
		return nil, err
	}
	want := filepath.Join(jailuid.DefaultDir, strconv.Itoa(uid))
	fdDir := filepath.Join("/proc", strconv.Itoa(keeper), "fd")
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, fmt.Errorf("VM cache: the keeper's fds: %w", err)
	}
	for _, d := range ents {
		if target, _ := os.Readlink(filepath.Join(fdDir, d.Name())); target != want {
			continue
		}
		n, _ := strconv.Atoi(d.Name())
		pfd, err := unix.PidfdOpen(keeper, 0)
		if err != nil {
			return nil, fmt.Errorf("VM cache: pidfd of the keeper: %w", err)
		}
		fd, err := unix.PidfdGetfd(pfd, n, 0)
		unix.Close(pfd)
		if err != nil {
			return nil, fmt.Errorf("VM cache: take the jail uid %d's lock from the keeper: %w", uid, err)
		}
		return os.NewFile(uintptr(fd), want), nil
	}
	return nil, fmt.Errorf("VM cache: the keeper (pid %d) holds no lock of jail uid %d", keeper, uid)
}

// processUID is the real uid of process pid.
func processUID(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("VM cache: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("VM cache: no Uid in /proc/%d/status", pid)
}

// watch closes done when any process of the VM ends; a helper's end stops
// the VMM (the guest lost its shared directory).
func (c *Claimed) watch() {
	fds := make([]unix.PollFd, len(c.pidfds))
	for i, fd := range c.pidfds {
		fds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
		if fds[0].Revents != 0 {
			c.ended("the VMM exited")
			break
		}
		if ended := endedHelper(fds); ended >= 0 {
			c.ended(fmt.Sprintf("its helper (pid %d) exited", c.e.Pids[ended]))
			c.killAll()
			break
		}
	}
	close(c.done)
}

func endedHelper(fds []unix.PollFd) int {
	for i, f := range fds[1:] {
		if f.Revents != 0 {
			return i + 1
		}
	}
	return -1
}

func (c *Claimed) ended(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopping && c.exitErr == nil {
		c.exitErr = fmt.Errorf("cached VM %s: %s", c.e.ID, why)
	}
}

func (c *Claimed) killAll() {
	for _, fd := range c.pidfds {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}

// Start does nothing: the VM runs since the daemon booted it.
func (c *Claimed) Start(context.Context) error { return nil }

// Stop kills the VM's processes and waits for them to end. Idempotent.
func (c *Claimed) Stop(context.Context) error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopping = true
		c.mu.Unlock()
		c.killAll()
		select {
		case <-c.done:
		case <-time.After(stopWait):
			c.stopErr = fmt.Errorf("cached VM %s: its processes did not end within %s of SIGKILL", c.e.ID, stopWait)
			return
		}
		for _, fd := range c.pidfds[1:] { // the helpers, which the VMM's end does not wait for
			waitPidfd(fd, stopWait)
		}
		c.closeFds()
	})
	return c.stopErr
}

// waitPidfd waits up to d for the process of pidfd fd to end.
func waitPidfd(fd int, d time.Duration) {
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(d.Milliseconds()))
}

// closeFds drops the pidfds and, the VMM being gone, the jail uid's lock.
func (c *Claimed) closeFds() {
	for _, fd := range c.pidfds {
		unix.Close(fd)
	}
	c.pidfds = nil
	if c.lease != nil {
		c.lease.Close()
	}
}

func (c *Claimed) Done() <-chan struct{} { return c.done }

// JailLock is the jail uid lock this process holds a copy of ("" when the
// VMM is not jailed).
func (c *Claimed) JailLock() string {
	if c.lease == nil {
		return ""
	}
	return c.lease.Name()
}

func (c *Claimed) ExitError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

func (c *Claimed) Pids() []int { return append([]int(nil), c.e.Pids...) }

func (c *Claimed) Info() hypervisor.Info {
	return hypervisor.Info{
		Driver: c.e.Driver, Accelerator: hypervisor.Accelerator(c.e.Accelerator), AccelReason: "as the VM cache's daemon booted it",
		Transport: contract.TransportSerial, TransportReason: "a cached VM's agent channel is virtio-serial",
		VCPUs: c.e.VCPUs, MemoryMiB: c.e.MemoryMiB, StartedAt: c.adopted,
		ConsolePath: filepath.Join(c.dir, c.e.Console), NICMACs: []string{c.e.MAC},
	}
}

func (c *Claimed) Resize(context.Context, uint32, uint32) error { return hypervisor.ErrNotSupported }

// DialAgent connects to the agent over the VM's virtio-serial socket and
// proves the VM's secret (in its directory since the boot). The channel
// carries one connection at a time, and a new one waits hangupGrace after
// the last hung up.
func (c *Claimed) DialAgent(ctx context.Context) (net.Conn, error) {
	select {
	case <-c.done:
		return nil, fmt.Errorf("cached VM %s: dial agent: the VM has stopped", c.e.ID)
	default:
	}
	c.mu.Lock()
	busy, wait := c.dialing, hangupGrace-time.Since(c.closedAt)
	c.dialing = !busy
	c.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("cached VM %s: dial agent: the virtio-serial channel carries one connection at a time and one is open", c.e.ID)
	}
	conn, err := c.dial(ctx, wait)
	if err != nil {
		c.hungUp()
		return nil, fmt.Errorf("cached VM %s: dial agent: %w", c.e.ID, err)
	}
	return &claimedConn{Conn: conn, c: c}, nil
}

func (c *Claimed) dial(ctx context.Context, wait time.Duration) (net.Conn, error) {
	if wait > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	secret, err := os.ReadFile(filepath.Join(c.dir, vmsecret.FileName))
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(c.dir, c.e.AgentSocket))
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	nonce, err := contract.NewNonce()
	if err == nil {
		err = contract.HostHandshake(conn, nonce)
	}
	if err == nil {
		err = contract.HostAuth(conn, secret, contract.TransportSerial)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

func (c *Claimed) hungUp() {
	c.mu.Lock()
	c.dialing, c.closedAt = false, time.Now()
	c.mu.Unlock()
}

// claimedConn frees the channel for the next DialAgent when closed.
type claimedConn struct {
	net.Conn
	c    *Claimed
	once sync.Once
}

func (cc *claimedConn) Close() error {
	err := cc.Conn.Close()
	cc.once.Do(cc.c.hungUp)
	return err
}

// inheritedVM is a claimed VM an earlier daemon booted, as a later one
// watches it (Keeper.Inherit): pidfds of its processes, no more.
type inheritedVM struct {
	id     string
	done   chan struct{}
	mu     sync.Mutex
	pidfds []int // VMM first; nil once it ended
}

// inherit opens pidfds of e's processes (each checked to still name the
// VM) and closes Done when its VMM ends.
func inherit(e Entry) (VM, error) {
	v := &inheritedVM{id: e.ID, done: make(chan struct{})}
	for _, pid := range e.Pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err == nil && !namesVM(pid, e.ID) {
			unix.Close(fd)
			err = fmt.Errorf("process %d no longer names it", pid)
		}
		if err != nil {
			v.closeFds()
			return nil, fmt.Errorf("VM cache: cached VM %s: %w", e.ID, err)
		}
		v.pidfds = append(v.pidfds, fd)
	}
	if len(v.pidfds) == 0 {
		return nil, fmt.Errorf("VM cache: cached VM %s lists no process", e.ID)
	}
	vmm := v.pidfds[0]
	go func() {
		for {
			_, err := unix.Poll([]unix.PollFd{{Fd: int32(vmm), Events: unix.POLLIN}}, -1)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		v.closeFds()
		close(v.done)
	}()
	return v, nil
}

// Stop kills the VM's processes and waits (bounded) for its VMM's end.
func (v *inheritedVM) Stop(context.Context) error {
	v.mu.Lock()
	for _, fd := range v.pidfds {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
	v.mu.Unlock()
	select {
	case <-v.done:
		return nil
	case <-time.After(stopWait):
		return fmt.Errorf("cached VM %s: its VMM did not end within %s of SIGKILL", v.id, stopWait)
	}
}

func (v *inheritedVM) closeFds() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, fd := range v.pidfds {
		unix.Close(fd)
	}
	v.pidfds = nil
}

func (v *inheritedVM) Release()              {}
func (v *inheritedVM) Done() <-chan struct{} { return v.done }
