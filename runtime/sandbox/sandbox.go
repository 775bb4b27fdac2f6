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
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/network"
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
	ID        string
	StateDir  string
	SharedDir string
	Agent     *agentclient.Client
	Timings   Timings

	vm      hypervisor.VM
	net     *network.Network
	cgroup  *hostcgroup.Cgroup
	destroy sync.Once
	mu      sync.Mutex
	rootfs  map[string]string // container id -> host mount point
}

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
func Create(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	s := &Sandbox{ID: o.ID, StateDir: StateDir(o.Config, o.ID), rootfs: map[string]string{}}
	s.Timings.Begin = time.Now()
	s.SharedDir = filepath.Join(s.StateDir, "shared")
	if err := os.MkdirAll(s.SharedDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			s.Destroy(context.WithoutCancel(ctx))
		}
	}()

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
	s.Timings.AgentReady = agent.ReadyAt

	fsType := h.SharedFS
	if _, err := agent.CreateSandbox(ctx, &api.CreateSandboxRequest{
		SandboxId: o.ID,
		Hostname:  o.Hostname,
		SharedFs:  &api.SharedFilesystem{Type: fsType, Tag: hypervisor.SharedFSTag, MountPoint: guestspec.GuestSharedDir},
		PodCgroup: o.GuestPodCgroup,
		PidsLimit: pidsLimit,
	}); err != nil {
		return nil, fmt.Errorf("agent CreateSandbox for %s: %w", o.ID, err)
	}
	if s.net != nil {
		if _, err := agent.ConfigureNetwork(ctx, s.net.Description().AgentRequest()); err != nil {
			return nil, fmt.Errorf("configure the network of sandbox %s in the guest: %w", o.ID, err)
		}
	}
	s.Timings.Ready = time.Now()
	return s, nil
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

// Info describes the VM.
func (s *Sandbox) Info() hypervisor.Info { return s.vm.Info() }

// Done is closed when the VM stops for any reason.
func (s *Sandbox) Done() <-chan struct{} { return s.vm.Done() }

// ExitError says why the VM stopped (nil after Destroy).
func (s *Sandbox) ExitError() error { return s.vm.ExitError() }

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
	target := filepath.Join(s.SharedDir, guestspec.RootfsDir(containerID))
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create rootfs dir for %s: %w", containerID, err)
	}
	// Recorded first, so UnmountRootfs also cleans up a partial mount.
	s.mu.Lock()
	s.rootfs[containerID] = target
	s.mu.Unlock()
	if err := mount.All(mounts, target); err != nil {
		s.UnmountRootfs(containerID)
		return fmt.Errorf("mount rootfs of %s into the sandbox share: %w", containerID, err)
	}
	return nil
}

// UnmountRootfs undoes MountRootfs; unknown ids are ignored.
func (s *Sandbox) UnmountRootfs(containerID string) error {
	s.mu.Lock()
	target, ok := s.rootfs[containerID]
	delete(s.rootfs, containerID)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return unmountAndRemove(filepath.Dir(target))
}

// unmountAndRemove detaches every mount at or below dir, then removes dir.
func unmountAndRemove(dir string) error {
	var errs []error
	for _, mp := range mountsUnder(dir) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Destroy tells the agent to stop everything, stops the VM, unmounts every
// rootfs and removes the state directory. It is idempotent.
func (s *Sandbox) Destroy(ctx context.Context) error {
	var errs []error
	s.destroy.Do(func() {
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
	})
	return errors.Join(errs...)
}
