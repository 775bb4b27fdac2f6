// Package sandbox owns one pod VM: its state directory, the shared directory
// that carries the containers' root filesystems into the guest, the VMM (via
// a hypervisor driver) and the connection to the guest agent. It knows
// nothing of containerd; the shim's task service drives it.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/portforward"
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
	// SharedDir is exported to the guest: a read-only view of HostDir
	// (see layout.go).
	SharedDir string
	// HostDir is where the shim mounts containers' root filesystems and
	// volumes; each mount appears in SharedDir.
	HostDir string
	Agent   *agentclient.Client
	Timings Timings

	vm      hypervisor.VM
	net     *network.Network
	forward *portforward.Forwarder // nil until set up (startPortForward)
	cgroup  *hostcgroup.Cgroup
	lock    *os.File // flock held while the sandbox exists (stale.go)
	destroy sync.Once
	mu      sync.Mutex
	rootfs  map[string]bool // containers with mounts in the share

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

// netnsFile records the pod's network namespace, so that cleanup after a
// dead shim can remove the taps and tc filters podvm added to it.
const netnsFile = "netns"

func (s *Sandbox) writeNetNS(path string) error {
	if err := os.WriteFile(filepath.Join(s.StateDir, netnsFile), []byte(path), 0o600); err != nil {
		return fmt.Errorf("record network namespace: %w", err)
	}
	return nil
}

// cgroupFile records the host cgroup the shim created, so that cleanup
// after a dead shim can remove it.
const cgroupFile = "host-cgroup"

// setUpCgroup creates the sandbox's host cgroup and reads the pod's pids
// limit from its parent (0, false when there is none).
func (s *Sandbox) setUpCgroup(ctx context.Context, path string) (pidsLimit int64, limited bool, err error) {
	// Recorded before it exists, so that a crash in between leaves no
	// cgroup unrecorded.
	if err := os.WriteFile(filepath.Join(s.StateDir, cgroupFile), []byte(path), 0o600); err != nil {
		return 0, false, fmt.Errorf("record host cgroup: %w", err)
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

// pidsFile records the VM's host processes so that a later `shim delete`
// (after the shim itself died) can stop them.
const pidsFile = "pids.json"

// Create boots the VM and waits for its agent. On error nothing is left.
// First it sweeps away the state directories that crashed shims left on
// this host (SweepStale).
func Create(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	if strings.Contains(o.ID, "/") || o.ID == "" || o.ID == "." || o.ID == ".." {
		return nil, fmt.Errorf("sandbox id %q cannot name a directory", o.ID)
	}
	s := &Sandbox{ID: o.ID, StateDir: StateDir(o.Config, o.ID), rootfs: map[string]bool{}, done: make(chan struct{})}
	s.Timings.Begin = time.Now()
	s.HostDir = filepath.Join(s.StateDir, mountsDirName)
	s.SharedDir = filepath.Join(s.StateDir, sharedDirName)
	root := filepath.Dir(s.StateDir)
	SweepStale(ctx, root)
	if err := claimStateDir(ctx, s.StateDir); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	if err := os.Mkdir(s.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	lock, err := lockNew(s.StateDir)
	if err != nil {
		os.RemoveAll(s.StateDir)
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	s.lock = lock
	defer func() {
		if retErr != nil {
			s.Destroy(context.WithoutCancel(ctx))
		}
	}()
	if err := setUpShare(s.HostDir, s.SharedDir); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}

	if o.NetNS != "" {
		nw, err := network.Setup(o.NetNS)
		if err != nil {
			return nil, fmt.Errorf("pod network of sandbox %s: %w", o.ID, err)
		}
		s.net = nw
		if err := s.writeNetNS(o.NetNS); err != nil {
			return nil, err
		}
	}
	var nets []hypervisor.NetDevice
	if s.net != nil {
		nets = s.net.Devices()
	}
	var pidsLimit *int64
	var vmCgroup hypervisor.Cgroup // a nil *hostcgroup.Cgroup would not be a nil interface
	if o.HostCgroup != "" {
		n, limited, err := s.setUpCgroup(ctx, o.HostCgroup)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
		}
		if limited {
			pidsLimit = &n
		}
		vmCgroup = s.cgroup
	}

	h := o.Config.Hypervisor
	vm, err := o.Driver.Create(ctx, hypervisor.Config{
		Net:          nets,
		ID:           o.ID,
		StateDir:     s.StateDir,
		KernelPath:   h.Kernel,
		InitrdPath:   h.Initrd,
		KernelParams: h.KernelParams,
		VCPUs:        o.Size.VCPUs,
		MemoryMiB:    o.Size.MemoryMiB,
		SharedDir:    s.SharedDir,
		SharedFS:     h.SharedFS,
		Transport:    transport(h.AgentTransport),
		Accelerator:  accelerator(h.Accelerator),
		Debug:        h.Debug,
		Cgroup:       vmCgroup,
	})
	if err != nil {
		return nil, err
	}
	s.vm = vm
	if err := vm.Start(ctx); err != nil {
		return nil, fmt.Errorf("start %s for sandbox %s: %w", o.Driver.Name(), o.ID, err)
	}
	s.Timings.VMMStarted = time.Now()
	info := vm.Info()
	log.G(ctx).WithFields(log.Fields{
		"sandbox": o.ID, "driver": info.Driver, "vcpus": info.VCPUs, "memory_mib": info.MemoryMiB,
		"accelerator": info.Accelerator, "accelerator_reason": info.AccelReason,
		"transport": info.Transport, "transport_reason": info.TransportReason,
	}).Info("pod VM started")
	if err := s.writePids(); err != nil {
		return nil, err
	}

	agent, err := agentclient.Connect(ctx, vm.DialAgent, time.Duration(o.Config.Runtime.AgentTimeout), vm.Done())
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w%s", o.ID, err, s.vmFailureDetail())
	}
	s.Agent = agent
	agent.OnHang(s.logConsoleTail)
	go s.watch(log.G(ctx))
	s.Timings.AgentReady = agent.ReadyAt

	fsType := h.SharedFS
	if _, err := agent.CreateSandbox(ctx, &api.CreateSandboxRequest{
		SandboxId: o.ID,
		Hostname:  o.Hostname,
		SharedFs:  &api.SharedFilesystem{Type: fsType, Tag: contract.SharedFSTag, MountPoint: contract.GuestSharedDir},
		PodCgroup: o.GuestPodCgroup,
		PidsLimit: pidsLimit,
	}); err != nil {
		return nil, fmt.Errorf("agent CreateSandbox for %s: %w", o.ID, err)
	}
	if s.net != nil {
		if _, err := agent.ConfigureNetwork(ctx, s.net.Description().AgentRequest()); err != nil {
			return nil, fmt.Errorf("configure the network of sandbox %s in the guest: %w", o.ID, err)
		}
		go s.startPortForward(context.WithoutCancel(ctx), o.NetNS)
	}
	s.Timings.Ready = time.Now()
	return s, nil
}

// startPortForward makes the CRI's port-forward connections, which it makes
// in the pod's network namespace on the host, reach the guest
// (runtime/portforward). It runs after the sandbox is ready, off the pod
// start path; without it the pod still runs, so a failure is a warning.
func (s *Sandbox) startPortForward(ctx context.Context, nsPath string) {
	logger := log.G(ctx).WithField("sandbox", s.ID)
	f, err := portforward.Start(ctx, nsPath, portforward.Agent{Client: s.Agent})
	if err != nil {
		logger.WithError(err).Warn("port forwarding into the pod VM is off (kubectl port-forward to this pod will fail)")
		return
	}
	s.mu.Lock()
	if s.destroying {
		s.mu.Unlock()
		f.Close()
		return
	}
	s.forward = f
	s.mu.Unlock()
	logger.WithField("listener_port", f.Port()).Debug("port forwarding into the pod VM is ready")
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

// vmFailureDetail explains a dead VM in an error message.
func (s *Sandbox) vmFailureDetail() string {
	select {
	case <-s.vm.Done():
		if err := s.vm.ExitError(); err != nil {
			return fmt.Sprintf("; the VM exited: %v", err)
		}
		return "; the VM exited"
	default:
		return fmt.Sprintf("; guest console log: %s", s.vm.Info().ConsolePath)
	}
}

// consoleTailBytes is how much of the guest console a hung agent call
// copies into the shim's log: enough for the agent's slow-call report
// (goroutines cut at 64 KiB, plus the process list) in most cases.
const consoleTailBytes = 96 << 10

// logConsoleTail copies the end of the guest console into the shim's log
// when an agent call got no answer: the console file goes with the
// sandbox's state directory, and the agent writes what it was doing there
// (agent/server slowcall.go) before the shim gives up.
func (s *Sandbox) logConsoleTail(method string) {
	path := s.vm.Info().ConsolePath
	tail, err := readTail(path, consoleTailBytes)
	entry := log.L.WithFields(log.Fields{"sandbox": s.ID, "call": method, "console": path})
	if err != nil {
		entry.WithError(err).Error("agent call got no answer; the guest console cannot be read")
		return
	}
	entry.Errorf("agent call got no answer; the guest console ends with:\n%s", tail)
	if d, ok := s.vm.(hypervisor.Diagnoser); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		entry.Errorf("agent call got no answer; the VMM says:\n%s", d.Diagnose(ctx))
	}
}

// readTail returns at most n bytes from the end of the file at path.
func readTail(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "", err
	}
	return string(buf), nil
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

// agentLostGrace is how long a lost agent channel waits for the VMM's own
// death to be seen: when QEMU dies its end of the channel closes first,
// and its exit status says more than the lost channel.
const agentLostGrace = 500 * time.Millisecond

// watch closes Done when the VM dies, or stops the VM when the agent's
// channel is lost while the VM runs: a VM whose agent cannot be reached
// can run nothing more, and its containers must be reported exited rather
// than wait for an answer that will never come.
func (s *Sandbox) watch(logger *log.Entry) {
	var why error
	select {
	case <-s.vm.Done():
		why = s.vm.ExitError()
	case <-s.Agent.Lost():
		select {
		case <-s.vm.Done():
			why = s.vm.ExitError()
		case <-time.After(agentLostGrace):
			s.mu.Lock()
			requested := s.destroying
			s.mu.Unlock()
			if !requested {
				why = fmt.Errorf("the agent's channel to sandbox %s closed while its VM ran (the guest agent crashed, hung up or sent garbage); the VM is stopped", s.ID)
				logger.WithError(why).Error("lost the pod VM's agent")
				if err := s.vm.Stop(context.Background()); err != nil {
					logger.WithError(err).Warn("stop the VM of a lost agent")
				}
			} else {
				<-s.vm.Done()
				why = s.vm.ExitError()
			}
		}
	}
	s.mu.Lock()
	if why != nil && !s.destroying {
		s.exitErr = why
	}
	s.mu.Unlock()
	s.doneOnce()
}

// Pids lists the host processes of the VM.
func (s *Sandbox) Pids() []int { return s.vm.Pids() }

type recordedPids struct {
	StateDir string `json:"state_dir"`
	Pids     []int  `json:"pids"`
}

func (s *Sandbox) writePids() error {
	b, _ := json.Marshal(recordedPids{StateDir: s.StateDir, Pids: s.vm.Pids()})
	if err := os.WriteFile(filepath.Join(s.StateDir, pidsFile), b, 0o600); err != nil {
		return fmt.Errorf("record VM pids: %w", err)
	}
	return nil
}

// MountRootfs mounts a container's root filesystem (as containerd's
// snapshotter prepared it) into the shared directory, where the guest sees it.
func (s *Sandbox) MountRootfs(ctx context.Context, containerID string, mounts []mount.Mount) error {
	if strings.Contains(containerID, "/") || containerID == "" || containerID == "." || containerID == ".." {
		return fmt.Errorf("container id %q cannot name a directory", containerID)
	}
	target := filepath.Join(s.HostDir, guestspec.RootfsDir(containerID))
	// Recorded first, so UnmountRootfs also cleans up a partial mount.
	s.mu.Lock()
	s.rootfs[containerID] = true
	s.mu.Unlock()
	if err := os.MkdirAll(target, 0o755); err != nil {
		s.UnmountRootfs(containerID)
		return fmt.Errorf("create rootfs dir for %s: %w", containerID, err)
	}
	if err := mount.All(mounts, target); err != nil {
		s.UnmountRootfs(containerID)
		return fmt.Errorf("mount rootfs of %s into the sandbox share: %w", containerID, err)
	}
	if err := mirrorReadOnly(s.HostDir, s.SharedDir, containerID); err != nil {
		s.UnmountRootfs(containerID)
		return err
	}
	return nil
}

// UnmountRootfs undoes MountRootfs and ShareMounts; unknown ids are
// ignored.
func (s *Sandbox) UnmountRootfs(containerID string) error {
	s.mu.Lock()
	ok := s.rootfs[containerID]
	delete(s.rootfs, containerID)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return unmountContainer(s.StateDir, containerID)
}

// Destroy tells the agent to stop everything, stops the VM, unmounts every
// rootfs and removes the state directory. It is idempotent.
func (s *Sandbox) Destroy(ctx context.Context) error {
	var errs []error
	s.destroy.Do(func() {
		s.mu.Lock()
		s.destroying = true
		forward := s.forward
		s.mu.Unlock()
		if forward != nil { // before the agent: its relays use it
			forward.Close()
		}
		if s.Agent != nil {
			select {
			case <-s.vm.Done():
			default:
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if _, err := s.Agent.DestroySandbox(actx, &api.DestroySandboxRequest{SandboxId: s.ID}); err != nil {
					log.G(ctx).WithError(err).Debug("agent DestroySandbox (the VM is stopped next regardless)")
				}
				cancel()
			}
			s.Agent.Close()
		}
		if s.vm != nil {
			if err := s.vm.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop VM of sandbox %s: %w", s.ID, err))
			}
		}
		// After the VMM: it holds the taps open until it exits.
		if s.net != nil {
			if err := s.net.Teardown(); err != nil {
				errs = append(errs, fmt.Errorf("tear down the network of sandbox %s: %w", s.ID, err))
			}
		}
		// After the VMM and virtiofsd have been reaped: the kernel removes
		// no cgroup that still holds a process.
		if s.cgroup != nil {
			if err := s.cgroup.Delete(); err != nil {
				errs = append(errs, fmt.Errorf("sandbox %s: %w", s.ID, err))
			}
		}
		if err := unmountAndRemove(s.StateDir); err != nil {
			errs = append(errs, fmt.Errorf("clean up sandbox %s: %w", s.ID, err))
		}
		if s.lock != nil {
			s.lock.Close() // after the directory is gone: a sweep finds nothing
		}
		if s.Agent == nil {
			// watch never ran: the VM did not get as far as its agent.
			s.doneOnce()
		}
	})
	return errors.Join(errs...)
}
