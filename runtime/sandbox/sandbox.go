// Package sandbox owns the lifecycle of one pod VM: Create prepares the
// host (state directory, shared directory, network, cgroup), boots the VM
// through a hypervisor driver and initializes the guest through its agent;
// Destroy undoes it all. The rooms it uses are packages of their own: the
// shared directory (share), cleanup after a crashed shim (crash), VM
// templates (factory), the VM's processes (runtime/hypervisor and its
// drivers). It knows nothing of
// containerd; the shim's task service drives it.
//
// Files, one phase or job each: create.go (Create and claiming the state
// directory), host.go (prepare the host), boot.go (boot the VM), clone.go
// (or clone it from a VM template), cache.go (or take one booted ahead), guest.go (initialize the guest), watch.go (the VM's death, the agent's loss, hang
// reports), destroy.go, rootfs.go (containers' mounts in the share),
// size.go (the VM's size from the pod's spec: Options.Size, computed by
// the shim before Create).
package sandbox

import (
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/portforward"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// Options describe the sandbox to create.
type Options struct {
	ID       string
	Hostname string
	Config   *config.Config
	Driver   hypervisor.Driver
	Size     Size
	// NetNS is the pod's network namespace (from CNI); its interfaces are
	// mirrored into the VM. Empty for a VM without networking.
	NetNS string
	// HostCgroup is the sandbox's cgroup on the host (a hostcgroup.ParsePath
	// result: the kubelet's pod cgroup plus the sandbox id). It is created
	// and receives the VMM and virtiofsd; its parent's pids.max becomes the
	// pod's pids limit in the guest. Empty: the VM stays in the shim's
	// cgroup.
	HostCgroup string
	// GuestPodCgroup is the guest cgroup the pod's containers are created
	// below (guestspec.PodCgroup), where a pids limit is set.
	GuestPodCgroup string
}

// Timings are host-clock timestamps of the start phases, for benchmarks.
type Timings struct {
	Begin      time.Time
	VMMStarted time.Time
	AgentReady time.Time
	Ready      time.Time
}

// Sandbox is a running pod VM.
type Sandbox struct {
	ID       string
	StateDir string
	Agent    *agentclient.Client
	Timings  Timings
	Size     Size // the VM's shape as booted; it does not change

	share   share.Share
	vm      hypervisor.VM
	early   *earlyAgent // a cached VM's agent connection, made during its adoption (cache.go)
	net     *network.Network
	forward *portforward.Forwarder // nil until set up (startPortForward)
	cgroup  *hostcgroup.Cgroup
	lock    *os.File // flock held while the sandbox exists (package crash)
	destroy sync.Once
	mu      sync.Mutex
	rootfs  map[string]bool // containers with mounts in the share
	hangs   hangLimiter     // hang reports (watch.go)

	// done closes when the VM is gone: it died, the agent's channel was
	// lost (then the VM is stopped), or Destroy stopped it. exitErr says
	// why, nil after Destroy.
	done       chan struct{}
	doneClose  sync.Once
	exitErr    error
	destroying bool
}

func (s *Sandbox) doneOnce() { s.doneClose.Do(func() { close(s.done) }) }

// StateDir is where sandbox id keeps its files under the configured root.
func StateDir(cfg *config.Config, id string) string {
	return filepath.Join(cfg.Runtime.StateDir, "sandboxes", id)
}

// Info describes the VM.
func (s *Sandbox) Info() hypervisor.Info { return s.vm.Info() }

// Done is closed when the VM stops for any reason: it died, the agent's
// channel was lost, or Destroy stopped it.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// ExitError says why the VM stopped (nil after Destroy).
func (s *Sandbox) ExitError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitErr
}

// Pids lists the host processes of the VM.
func (s *Sandbox) Pids() []int { return s.vm.Pids() }
