package cache

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/vishvananda/netns"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/childproc"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// Where the daemon keeps what is its own.
const (
	// HoldNetNS is the holding network namespace (/run/netns/<name>) of
	// cached VMs' taps.
	HoldNetNS = "podvm-cache"
	// Cgroup is the daemon's VMs' host cgroup until a claim moves them
	// into a pod's (not under the templates' /podvm-factory: cgroup v2
	// allows no process beside a child cgroup).
	Cgroup = "/podvm-cache"
	// AgentSocket and ConsoleLog are the QEMU driver's names in a VM's
	// state directory; the daemon checks the first exists after the boot.
	AgentSocket = "agent.sock"
	ConsoleLog  = "console.log"
)

// PoolDir is the pool of the runtime whose state_dir is stateDir: beside
// the sandboxes' state directories, so that a claim's rename stays on one
// filesystem.
func PoolDir(stateDir string) string { return filepath.Join(stateDir, "cache") }

// ClaimedGlob matches where sandboxes put claimed VMs (runtime/sandbox
// cache.go: <state_dir>/sandboxes/<id>/vm).
func ClaimedGlob(stateDir string) string {
	return filepath.Join(stateDir, "sandboxes", "*", ClaimedName)
}

// ClaimedName is a claimed VM's directory in its sandbox's state dir.
const ClaimedName = "vm"

// Daemon is `podvm factory serve`: a Keeper whose VMs the configured
// driver boots at the configuration's default size.
type Daemon struct {
	Config *config.Config
	Driver hypervisor.Driver
	// NetNS names the holding namespace; empty is HoldNetNS.
	NetNS string
	Log   *log.Entry

	nsPath string
	cgroup *hostcgroup.Cgroup
	key    string
}

// Run keeps the pool full until ctx ends, then stops its VMs.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Log == nil {
		d.Log = log.L
	}
	lock, err := lockPool(d.Config.Runtime.StateDir) // one daemon per pool
	if err != nil {
		return err
	}
	defer unlockPool(lock)
	name := d.NetNS
	if name == "" {
		name = HoldNetNS
	}
	if d.nsPath, err = holdingNetNS(name); err != nil {
		return err
	}
	if d.cgroup, err = hostcgroup.Create(Cgroup); err != nil {
		return fmt.Errorf("VM cache: %w", err)
	}
	// The pool's ready VMs take only the CPU the node's pods leave; a
	// claim moves a VM out, into its pod's cgroup, before the shim talks
	// to it.
	cpu, err := d.cgroup.SetIdle()
	if err != nil {
		d.Log.WithError(err).Warn("VM cache: its VMs run at normal CPU priority")
	}
	base := d.vmConfig("", "", "", nil)
	if d.key, err = Key(d.Driver.Name(), base, d.Config.Hypervisor.GuestOCIRuntime); err != nil {
		return err
	}
	// A VM this daemon boots may come to run a pod, which must not die
	// with the daemon: its VMs outlive it, and its next start ends those
	// still its own (killStrays, then the keeper's sweep).
	childproc.SetOutliveParent(true)
	killStrays(PoolDir(d.Config.Runtime.StateDir), ClaimedGlob(d.Config.Runtime.StateDir), d.Log)
	f := d.Config.Factory
	k := &Keeper{
		Pool: Pool{Dir: PoolDir(d.Config.Runtime.StateDir)}, Size: f.CacheSize, MaxAge: time.Duration(f.CacheMaxAge),
		Boot: d.boot, Leftover: killLeftover, Remove: share.UnmountAndRemove, Claimed: ClaimedGlob(d.Config.Runtime.StateDir), Inherit: inherit, Log: d.Log,
		// Pods start in bursts, and a boot in one takes their CPU
		// (factory.cache_refill_quiet, docs/factory.md section 9).
		Quiet: time.Duration(f.CacheRefillQuiet), QuietMax: time.Duration(f.CacheRefillQuietMax),
	}
	d.Log.WithFields(log.Fields{"pool": k.Pool.Dir, "size": k.Size, "key": d.key, "cpu_priority": cpu,
		"vcpus": base.VCPUs, "memory_mib": base.MemoryMiB}).Info("VM cache serving")
	err = k.Run(ctx)
	removeEmptyPool(k.Pool.Dir)
	// Empty now: VMs pods took were moved into their pods' cgroups.
	if derr := d.cgroup.Delete(); derr != nil {
		d.Log.WithError(derr).Warn("VM cache: remove its host cgroup")
	}
	return err
}

// vmConfig is a cached VM's configuration: the configuration's guest
// image and VMM settings at its default size, with the pool's dirs.
func (d *Daemon) vmConfig(id, dir, sharedDir string, nic []hypervisor.NetDevice) hypervisor.Config {
	h := d.Config.Hypervisor
	cfg := hypervisor.Config{
		ID: "cache-" + id, StateDir: dir,
		KernelPath: h.Kernel, InitrdPath: h.Initrd, KernelParams: h.KernelParams,
		VCPUs: h.DefaultVCPUs, MemoryMiB: h.DefaultMemoryMiB,
		SharedDir: sharedDir, SharedFS: h.SharedFS, AllowGuestSetID: h.AllowGuestSetID,
		Transport:   contract.Transport(strings.TrimPrefix(h.AgentTransport, "auto")),
		Accelerator: hypervisor.Accelerator(strings.TrimPrefix(h.Accelerator, "auto")),
		Debug:       h.Debug, Net: nic,
	}
	return cfg
}

// boot boots VM id in dir: its share, a tap in the holding namespace, the
// VM, and its agent's handshake (so that it is ready when claimed).
func (d *Daemon) boot(ctx context.Context, id, dir string) (_ Entry, _ VM, err error) {
	sh := share.At(dir)
	if err := sh.SetUp(); err != nil {
		return Entry{}, nil, err
	}
	tapName := "pc" + id[:12]
	tap, err := network.HoldTap(d.nsPath, tapName)
	if err != nil {
		return Entry{}, nil, err
	}
	mac, err := randomMAC()
	if err != nil {
		tap.Close()
		return Entry{}, nil, err
	}
	cfg := d.vmConfig(id, dir, sh.SharedDir, []hypervisor.NetDevice{{Tap: tap, VnetHdr: true, MAC: mac, MTU: 1500}})
	if cfg.Transport == "" { // auto: a shim adopts a cached VM over virtio-serial only (Claimed.DialAgent)
		cfg.Transport = contract.TransportSerial
	}
	vm, err := d.Driver.Create(ctx, cfg)
	if err != nil {
		tap.Close()
		return Entry{}, nil, err
	}
	c := &cachedVM{vm: vm, tap: tap}
	defer func() {
		if err != nil {
			c.Stop(context.WithoutCancel(ctx)) // the keeper removes dir
		}
	}()
	if err := vm.Start(ctx); err != nil {
		return Entry{}, nil, err
	}
	info := vm.Info()
	if info.Transport != contract.TransportSerial {
		return Entry{}, nil, fmt.Errorf("VM cache: the agent channel is %s; a cached VM's must be virtio-serial", info.Transport)
	}
	if err := d.waitAgent(ctx, vm); err != nil {
		return Entry{}, nil, err
	}
	if err := d.idle(vm.Pids()); err != nil {
		return Entry{}, nil, err
	}
	console, _ := filepath.Rel(dir, info.ConsolePath)
	return Entry{Key: d.key, VCPUs: info.VCPUs, MemoryMiB: info.MemoryMiB, Pids: vm.Pids(), Keeper: os.Getpid(),
		Driver: info.Driver, Accelerator: string(info.Accelerator), AgentSocket: AgentSocket, Console: console,
		MAC: mac, Tap: tapName, HoldNS: d.nsPath}, c, nil
}

// idle moves a booted VM's processes into the pool's cgroup, at idle CPU
// priority. A VM boots in the daemon's cgroup, at its priority: starved,
// a boot took 7 s and its QEMU's monitor stopped answering
// (docs/factory.md section 9); the refill's wait for a quiet moment keeps
// boots out of pods' bursts instead.
func (d *Daemon) idle(pids []int) error {
	if d.cgroup == nil {
		return nil
	}
	for _, pid := range pids {
		if err := d.cgroup.Add(pid); err != nil {
			return fmt.Errorf("VM cache: %w", err)
		}
	}
	return nil
}

// waitAgent dials the agent until it admits the host, has it warm the
// guest's OCI runtime (so that a claimed VM's first container is not the
// runtime's first run), then hangs up.
func (d *Daemon) waitAgent(ctx context.Context, vm hypervisor.VM) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(d.Config.Runtime.AgentTimeout))
	defer cancel()
	for {
		c, err := vm.DialAgent(ctx)
		if err == nil {
			return agentclient.WarmRuntime(ctx, c, d.Config.Hypervisor.GuestOCIRuntime)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM cache: the agent did not answer: %w", err)
		case <-vm.Done():
			return fmt.Errorf("VM cache: the VM exited before its agent answered: %v", vm.ExitError())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cachedVM is a booted VM as the daemon holds it.
type cachedVM struct {
	vm  hypervisor.VM
	tap *os.File
}

func (c *cachedVM) Stop(ctx context.Context) error {
	err := c.vm.Stop(ctx)
	c.tap.Close()
	return err
}

// Release drops the daemon's fd of the tap: a claim moves the tap into a
// pod's namespace, where the shim owns it.
func (c *cachedVM) Release()              { c.tap.Close() }
func (c *cachedVM) Done() <-chan struct{} { return c.vm.Done() }

// randomMAC is a locally administered unicast address.
func randomMAC() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[0] = b[0]&^1 | 2
	return net.HardwareAddr(b).String(), nil
}

// holdingNetNS makes the holding namespace /run/netns/name unless it
// exists, and returns its path.
func holdingNetNS(name string) (string, error) {
	path := filepath.Join("/run/netns", name)
	if h, err := netns.GetFromPath(path); err == nil {
		h.Close()
		return path, nil
	}
	errc := make(chan error, 1)
	go func() {
		// NewNamed moves this thread into the new namespace; it stays
		// locked, so Go ends the thread with the goroutine.
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return "", fmt.Errorf("VM cache: holding network namespace %s: %w", path, err)
	}
	return path, nil
}

// killLeftover kills the processes of a VM an earlier daemon left (each
// only if its command line still names the VM).
func killLeftover(_ string, e Entry, hasEntry bool) {
	if !hasEntry {
		return
	}
	for _, pid := range e.Pids {
		if namesVM(pid, e.ID) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// namesVM says whether process pid's command line names VM id.
func namesVM(pid int, id string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && id != "" && strings.Contains(string(b), id)
}

// killStrays kills every process of a VM an earlier daemon booted that
// neither a sandbox holds nor the pool lists any more: a VM whose boot the
// daemon's death interrupted (no entry, so the sweep has no pids), or a
// claimed VM whose shim died while no daemon watched it (its sandbox's
// directory is gone). Such a process names its VM's directory in the pool
// on its command line (QEMU's and virtiofsd's sockets and logs are there);
// one whose VM a sandbox holds is left alone. VMs still listed in the pool
// are the keeper's sweep's (killLeftover).
func killStrays(pool, claimed string, lg *log.Entry) {
	held := map[string]bool{}
	dirs, _ := filepath.Glob(claimed)
	for _, d := range dirs {
		if e, err := ReadEntry(d); err == nil {
			held[e.ID] = true
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		id := vmOfCmdline(string(b), pool)
		if id == "" || held[id] {
			continue
		}
		if _, err := os.Stat(filepath.Join(pool, id, EntryName)); err == nil {
			continue // listed: the sweep's
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid > 0 && pid != os.Getpid() && syscall.Kill(pid, syscall.SIGKILL) == nil {
			lg.WithFields(log.Fields{"vm": id, "pid": pid}).Warn("killed a process of a cached VM an earlier daemon left")
		}
	}
}

// vmOfCmdline is the id of the cached VM whose directory in pool (or in
// its retired area) a command line names, or "".
func vmOfCmdline(cmdline, pool string) string {
	_, rest, ok := strings.Cut(cmdline, pool+"/")
	if !ok {
		return ""
	}
	rest = strings.TrimPrefix(rest, retiredName+"/")
	id, _, _ := strings.Cut(rest, "/")
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return ""
	}
	return id
}
