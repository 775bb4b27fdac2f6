package container

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// makeWarmRootfs makes the throwaway container's root: the mount points,
// its program's among them.
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
// device cgroup's BPF program), a CPU weight and a seccomp filter. Its
// program is self, the agent's binary, bound read-only at warmProgram.
// With a pause, it joins the pause's ipc and uts namespaces by path, as a
// pod's app container joins its sandbox's.
func warmContainerSpec(self string, pause *Container) *specs.Spec {
	shares := uint64(2)
	namespaces := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	if pause != nil {
		namespaces[1].Path = fmt.Sprintf("/proc/%d/ns/ipc", pause.Pid())
		namespaces[2].Path = fmt.Sprintf("/proc/%d/ns/uts", pause.Pid())
	}
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "warm",
		Process:  warmProcess(),
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
			{Destination: warmProgram, Type: "bind", Source: self, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			Namespaces: namespaces,
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

// warmProcess is the warm-up containers' process with args after
// warmProgram: an init's (none) or an exec's.
func warmProcess(args ...string) *specs.Process {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
		"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	return &specs.Process{
		Args: append([]string{warmProgram}, args...), Env: []string{"PATH=/", "GOMAXPROCS=1"}, Cwd: "/", NoNewPrivileges: true,
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
	}
}

// warmSeccomp is a filter of the shape of containerd's default profile
// (errno by default, an allow list), shorter: what the runtimes' inits do
// once the filter is in (runc reopens its exec fifo through a checked
// /proc handle, which takes fstatfs) and what the Go runtime of the
// container's program needs, so that the init lives until it is killed.
func warmSeccomp() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{{Action: specs.ActAllow, Names: []string{
			"accept4", "access", "arch_prctl", "bind", "brk", "capget", "capset", "chdir", "clock_getres", "clock_gettime",
			"clock_nanosleep", "clone", "clone3", "close", "close_range", "connect", "dup", "dup2", "dup3", "epoll_create1",
			"epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd2", "execve", "execveat", "exit", "exit_group",
			"faccessat", "faccessat2", "fchdir", "fcntl", "fstat", "fstatfs", "futex", "getcwd", "getdents64", "getegid",
			"geteuid", "getgid", "getpid", "getppid", "getrandom", "getrlimit", "gettid", "getuid", "ioctl", "kill", "lseek",
			"madvise", "mmap", "mprotect", "munmap", "nanosleep", "newfstatat", "openat", "openat2", "pipe2", "poll", "ppoll",
			"prctl", "pread64", "prlimit64", "read", "readlink", "readlinkat", "restart_syscall", "rseq", "rt_sigaction",
			"rt_sigprocmask", "rt_sigreturn", "sched_getaffinity", "sched_yield", "set_robust_list", "set_tid_address",
			"setgid", "setgroups", "setrlimit", "setuid", "sigaltstack", "socket", "stat", "statfs", "statx", "tgkill",
			"uname", "wait4", "waitid", "write", "writev",
		}}},
	}
}
