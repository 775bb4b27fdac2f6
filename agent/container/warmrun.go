package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// WarmID is the throwaway container WarmRuntime creates and removes.
const WarmID = "podvm-warm-runtime"

// warmProgram is the file the throwaway container would run: it is never
// started, but the runtime looks its program up at create.
const warmProgram = "/warm"

// WarmRuntime chooses the OCI runtime name (as SetRuntime) and creates and
// removes a throwaway container with it, through the same code a pod's
// container takes (bundle, runtime create with namespaces, cgroup, devices,
// seccomp and mounts, OOM watch, delete), so that the VM's first real
// create does not run all of that code, the runtime's and the guest
// kernel's, for the first time (docs/agent.md, "Warming the runtime").
// It leaves nothing: no bundle, runtime state, cgroup or process.
func (m *Manager) WarmRuntime(ctx context.Context, name string) error {
	if err := m.SetRuntime(name); err != nil {
		return err
	}
	spec, err := json.Marshal(warmContainerSpec())
	if err != nil {
		return fmt.Errorf("warm the OCI runtime: %w", err)
	}
	if _, err := m.Get(WarmID); err == nil {
		return fmt.Errorf("warm the OCI runtime: an earlier warm-up's container is still there: %w", errdefs.ErrFailedPrecondition)
	}
	// Until the runtime has the container, the bundle is only ours; after,
	// Remove (or DestroySandbox, if Remove fails) removes it.
	bundle := filepath.Join(m.cfg.BundleDir, WarmID)
	if err := makeWarmRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		_ = os.RemoveAll(bundle)
		return fmt.Errorf("warm the OCI runtime: %w", err)
	}
	begin := time.Now()
	if _, err := m.Create(ctx, CreateRequest{ID: WarmID, Spec: spec}); err != nil {
		_ = os.RemoveAll(bundle)
		return fmt.Errorf("warm the OCI runtime: %w", err)
	}
	created := time.Now()
	if err := m.Remove(ctx, WarmID); err != nil {
		return fmt.Errorf("warm the OCI runtime: %w", err)
	}
	log.G(ctx).WithField("create", created.Sub(begin).Round(time.Millisecond)).WithField("remove", time.Since(created).Round(time.Millisecond)).
		Infof("warmed the OCI runtime %s", m.Runtime())
	return nil
}

// makeWarmRootfs makes the throwaway container's root: the mount points
// and an empty executable file as its program.
func makeWarmRootfs(root string) error {
	for _, d := range []string{"proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, warmProgram), nil, 0o755)
}

// warmContainerSpec is a container like the ones containerd's CRI plugin
// asks for: its namespaces (the pod's network, which is the VM's),
// capabilities, mounts, masked and read-only paths, device rules (the
// device cgroup's BPF program), a CPU weight and a seccomp filter.
func warmContainerSpec() *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
		"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	shares := uint64(2)
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "warm",
		Process: &specs.Process{
			Args: []string{warmProgram}, Env: []string{"PATH=/"}, Cwd: "/", NoNewPrivileges: true,
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
					{Allow: true, Type: "c", Major: int64p(1), Minor: int64p(3), Access: "rwm"},
					{Allow: true, Type: "c", Major: int64p(136), Access: "rwm"}},
				CPU: &specs.LinuxCPU{Shares: &shares},
			},
			MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/scsi", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			Seccomp:       warmSeccomp(),
		},
	}
}

func int64p(v int64) *int64 { return &v }

// warmSeccomp is a filter of the shape of containerd's default profile
// (errno by default, an allow list), shorter.
func warmSeccomp() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{{Action: specs.ActAllow, Names: []string{
			"accept4", "access", "arch_prctl", "bind", "brk", "capget", "capset", "chdir", "clock_gettime", "clone", "clone3",
			"close", "connect", "dup2", "dup3", "epoll_create1", "epoll_ctl", "epoll_pwait", "execve", "exit", "exit_group",
			"fchdir", "fcntl", "fstat", "futex", "getcwd", "getdents64", "getpid", "getppid", "getuid", "ioctl", "kill",
			"lseek", "mmap", "mprotect", "munmap", "nanosleep", "newfstatat", "openat", "pipe2", "poll", "prctl", "pread64",
			"read", "readlink", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_yield", "set_robust_list",
			"set_tid_address", "setgid", "setgroups", "setuid", "sigaltstack", "socket", "stat", "statx", "uname", "wait4", "write",
		}}},
	}
}
