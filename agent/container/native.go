package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/cgroup"
	"github.com/podvm/podvm/agent/pause"
)

// NativeRuntime is the runtime name of a container the agent created
// itself: a CRI pod's sandbox (pause) container (docs/agent.md, "The
// native sandbox").
const NativeRuntime = "native"

// annotationContainerType is set by containerd's CRI on every container:
// "sandbox" for the pod's pause container.
const annotationContainerType = "io.kubernetes.cri.container-type"

// nativeNamespaces are the namespaces the native pause creates, with their
// clone flags. The network namespace is absent: a pod's is the guest's own.
var nativeNamespaces = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace: unix.CLONE_NEWPID, specs.IPCNamespace: unix.CLONE_NEWIPC,
	specs.UTSNamespace: unix.CLONE_NEWUTS, specs.MountNamespace: unix.CLONE_NEWNS,
	specs.CgroupNamespace: unix.CLONE_NEWCGROUP,
}

// nativeReason says why the container of spec, asking for st, is created
// by the OCI runtime rather than natively; "" means natively. Only a CRI
// sandbox container with nothing the native pause does not do qualifies.
func nativeReason(cfg Config, spec *specs.Spec, st Stdio) string {
	switch {
	case !cfg.NativeSandbox:
		return "the native sandbox is off"
	case spec.Annotations[annotationContainerType] != "sandbox":
		return "not a CRI sandbox container"
	case st != Stdio{}:
		return "its stdio is asked for"
	case spec.Hooks != nil:
		return "it has hooks"
	case spec.Linux.Seccomp != nil:
		return "it has a seccomp profile"
	case spec.Process.ApparmorProfile != "" || spec.Process.SelinuxLabel != "":
		return "it has an LSM label"
	case len(spec.Linux.UIDMappings) > 0 || len(spec.Linux.GIDMappings) > 0:
		return "it has id mappings (a user namespace pod)"
	case spec.Linux.IntelRdt != nil:
		return "it asks for Intel RDT"
	case !hasNamespace(spec, specs.MountNamespace):
		return "it has no mount namespace of its own"
	}
	for _, ns := range spec.Linux.Namespaces {
		if _, ok := nativeNamespaces[ns.Type]; !ok {
			return fmt.Sprintf("it asks for a %s namespace", ns.Type)
		}
		if ns.Path != "" {
			return fmt.Sprintf("it joins the %s namespace %s", ns.Type, ns.Path)
		}
	}
	for _, r := range spec.Process.Rlimits {
		if _, ok := pause.Resources[r.Type]; !ok {
			return fmt.Sprintf("rlimit %s is unknown", r.Type)
		}
	}
	guestNet := cfg.OwnsNetwork && !hasNamespace(spec, specs.NetworkNamespace)
	for key := range spec.Linux.Sysctl {
		if guestNet && strings.HasPrefix(key, "net.") {
			continue // the guest's own: applyNetSysctls
		}
		if !nativeSysctl(spec, key) {
			return fmt.Sprintf("sysctl %s is not in a namespace of its own", key)
		}
	}
	if !cfg.cgroupV2() {
		return "cgroup v2 is not mounted at " + cfg.cgroupRoot()
	}
	return ""
}

// nativeSysctl says whether the native pause can set key: one of the ipc
// namespace's in a new ipc namespace, or the uts namespace's in a new uts
// namespace, as runc allows them. (net.* ones of a pod are the guest's
// own, applyNetSysctls: containerd's CRI adds two to every sandbox.)
func nativeSysctl(spec *specs.Spec, key string) bool {
	ipc := strings.HasPrefix(key, "fs.mqueue.") || slices.Contains([]string{"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni",
		"kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}, key)
	uts := key == "kernel.hostname" || key == "kernel.domainname"
	return ipc && hasNamespace(spec, specs.IPCNamespace) || uts && hasNamespace(spec, specs.UTSNamespace)
}

func (cfg Config) cgroupRoot() string {
	if cfg.CgroupRoot != "" {
		return cfg.CgroupRoot
	}
	return cgroup.Mountpoint
}

func (cfg Config) cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs(cfg.cgroupRoot(), &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

func (cfg Config) self() string {
	if cfg.Self != "" {
		return cfg.Self
	}
	return "/proc/self/exe"
}

// nativePause is what the agent keeps of a sandbox container it created.
type nativePause struct {
	cg *cgroup2.Manager
}

// createNative creates the pod's pause process in its namespaces and
// cgroup (pause.Main) and waits until it is set up.
func (m *Manager) createNative(ctx context.Context, r CreateRequest, spec *specs.Spec, marks []Mark) (_ *Container, retErr error) {
	if err := checkRoot(filepath.Join(m.cfg.BundleDir, r.ID), r.ID, spec.Root.Path); err != nil {
		return nil, err
	}
	if m.cfg.OwnsNetwork && !hasNamespace(spec, specs.NetworkNamespace) {
		if err := applyNetSysctls(r.ID, spec, "/proc/sys"); err != nil {
			return nil, err
		}
	}
	c := newContainer(m, r.ID, filepath.Join(m.cfg.BundleDir, r.ID), ociRuntime{name: NativeRuntime})
	res := cgroup2.ToResources(spec.Linux.Resources)
	// The pause opens no device and nothing else runs in its cgroup: the
	// device rules would constrain nobody.
	res.Devices = nil
	cg, err := cgroup2.NewManager(m.cfg.cgroupRoot(), spec.Linux.CgroupsPath, res)
	if err != nil {
		return nil, fmt.Errorf("create container %s: cgroup %s: %w", r.ID, spec.Linux.CgroupsPath, err)
	}
	defer func() {
		if retErr != nil {
			deleteCgroup(cg)
		}
	}()
	marks = append(marks, MarkNow(contract.MarkBundleWritten))
	pid, err := startPause(m.cfg, spec, filepath.Join(m.cfg.cgroupRoot(), spec.Linux.CgroupsPath))
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", r.ID, err)
	}
	marks = append(marks, MarkNow(contract.MarkRuntimeCreated))
	c.native = &nativePause{cg: cg}
	c.cgroup = cgroup.Cgroup{V2: true, Root: m.cfg.cgroupRoot(), Path: spec.Linux.CgroupsPath}
	s, p, err := newStdio(false, false, false)
	if err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, fmt.Errorf("create container %s: %w", r.ID, err)
	}
	p.Close()
	c.init = newProcess(c, "", pid, s)
	m.watchOOM(ctx, c)
	c.marks = append(marks, MarkNow(contract.MarkCreateEnd))
	return c, nil
}

// startPause starts the pause process in the cgroup at cgroupDir and the
// spec's namespaces, and returns its pid once it reported itself set up.
func startPause(cfg Config, spec *specs.Spec, cgroupDir string) (int, error) {
	conf, err := json.Marshal(pauseConfig(spec))
	if err != nil {
		return 0, fmt.Errorf("pause config: %w", err)
	}
	cgDir, err := os.Open(cgroupDir)
	if err != nil {
		return 0, fmt.Errorf("open cgroup: %w", err)
	}
	defer cgDir.Close()
	confR, confW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer confR.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		confW.Close()
		return 0, err
	}
	defer statusR.Close()
	var flags uintptr
	for _, ns := range spec.Linux.Namespaces {
		flags |= nativeNamespaces[ns.Type]
	}
	cmd := &exec.Cmd{Path: cfg.self(), Args: []string{pause.Arg0}, Env: pause.Env, Dir: "/",
		ExtraFiles:  []*os.File{confR, statusW},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: flags, UseCgroupFD: true, CgroupFD: int(cgDir.Fd())}}
	err = cmd.Start()
	statusW.Close()
	if err != nil {
		confW.Close()
		return 0, fmt.Errorf("start the pause process: %w", err)
	}
	pid := cmd.Process.Pid
	// The agent's reaper collects the exit; the handle is not needed.
	_ = cmd.Process.Release()
	_, werr := confW.Write(conf)
	confW.Close()
	answer, rerr := io.ReadAll(statusR)
	if string(answer) == pause.Ready {
		return pid, nil
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	switch {
	case len(answer) > 0:
		return 0, fmt.Errorf("set up the pause process: %s", answer)
	case werr != nil:
		return 0, fmt.Errorf("send the pause process its config: %w", werr)
	case rerr != nil:
		return 0, fmt.Errorf("read the pause process's answer: %w", rerr)
	}
	return 0, fmt.Errorf("the pause process (pid %d) exited before it was set up", pid)
}

// pauseConfig is what the pause process sets up itself.
func pauseConfig(spec *specs.Spec) pause.Config {
	c := pause.Config{
		Hostname: spec.Hostname, Domainname: spec.Domainname, Sysctls: spec.Linux.Sysctl, Root: spec.Root.Path,
		UID: spec.Process.User.UID, GID: spec.Process.User.GID, AdditionalGids: spec.Process.User.AdditionalGids,
		OOMScoreAdj: spec.Process.OOMScoreAdj,
	}
	for _, r := range spec.Process.Rlimits {
		c.Rlimits = append(c.Rlimits, pause.Rlimit{Resource: pause.Resources[r.Type], Soft: r.Soft, Hard: r.Hard})
	}
	return c
}

// signal signals the pause; with all, every process of its cgroup.
func (n *nativePause) signal(c *Container, sig syscall.Signal, all bool) error {
	if all {
		pids, err := c.cgroup.Procs()
		if err != nil {
			return err
		}
		for _, pid := range pids {
			if pid != c.init.pid {
				_ = unix.Kill(pid, sig)
			}
		}
	}
	if err := unix.Kill(c.init.pid, sig); err != nil {
		return fmt.Errorf("signal %d to container %s: %w", sig, c.id, err)
	}
	return nil
}

// destroy kills the pause if it still runs (its exit is awaited by the
// caller) and removes its cgroup once it is empty.
func (n *nativePause) destroy(c *Container) error {
	if !c.init.exited() {
		if err := c.cgroup.Kill(); err != nil {
			return fmt.Errorf("delete container %s: %w", c.id, err)
		}
	}
	select {
	case <-c.init.done:
	case <-time.After(exitTimeout):
		return fmt.Errorf("delete container %s: the pause (pid %d) still not reaped after %v", c.id, c.init.pid, exitTimeout)
	}
	if err := n.cg.Delete(); err != nil {
		return fmt.Errorf("delete container %s: remove cgroup %s: %w", c.id, c.cgroup, err)
	}
	return nil
}

// deleteCgroup removes the cgroup of a pause that failed, once the kernel
// has taken the killed process out of it, for up to a second.
func deleteCgroup(cg *cgroup2.Manager) {
	for range 100 {
		if err := cg.Delete(); err == nil || errors.Is(err, fs.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// update applies resources to the pause's cgroup.
func (n *nativePause) update(r *specs.LinuxResources) error {
	res := cgroup2.ToResources(r)
	res.Devices = nil
	return n.cg.Update(res)
}

// errNativeExec is the answer to an exec in a native sandbox container,
// which has no OCI runtime state to exec with.
var errNativeExec = fmt.Errorf("the sandbox container was created by the agent itself (no OCI runtime to exec with): %w", errdefs.ErrNotImplemented)
