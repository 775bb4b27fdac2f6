// Package pause is the pod's sandbox (pause) process when the agent creates
// it itself instead of through the OCI runtime (docs/agent.md, "The native
// sandbox"): the agent's own binary, re-executed as argv[0] Arg0 into new
// namespaces and the pod's guest cgroup, which sets itself up from a Config
// the agent writes to it, reports, drops its privileges and then only waits
// for signals and reaps children, like Kubernetes' pause.
package pause

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arg0 is the pause process's argv[0], the name a pod's containers see in
// /proc/<pid>/cmdline, as with Kubernetes' pause image.
const Arg0 = "/pause"

// Env is the pause process's whole environment: one thread of Go's
// scheduler is all it needs.
var Env = []string{"GOMAXPROCS=1"}

// The pause process's extra files (os/exec ExtraFiles): the agent writes
// the Config to the first, the pause answers on the second.
const (
	configFD = 3
	statusFD = 4
)

// Ready is the pause process's answer once it is set up; anything else it
// writes is why its setup failed.
const Ready = "ready"

// Config is what the pause process sets up in its namespaces.
type Config struct {
	Hostname   string `json:"hostname,omitempty"`
	Domainname string `json:"domainname,omitempty"`
	// Sysctls are written in the pause's namespaces (ipc and uts ones).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Root is the pause container's root filesystem, pivoted into and
	// mounted read-only, so that /proc/<pid>/root of the pause shows what
	// runc would have shown and nothing of the guest.
	Root           string   `json:"root"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
	OOMScoreAdj    *int     `json:"oomScoreAdj,omitempty"`
	// Rlimits are set on the pause itself, as runc would (containerd's
	// CRI gives a sandbox none; a process joining its namespaces does not
	// inherit them).
	Rlimits []Rlimit `json:"rlimits,omitempty"`
}

// Rlimit is one resource limit, by its resource number (Resources).
type Rlimit struct {
	Resource   int    `json:"resource"`
	Soft, Hard uint64 `json:",omitempty"`
}

// Resources are the OCI spec's rlimit names and their numbers.
var Resources = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": 10,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15, "RLIMIT_SIGPENDING": 11, "RLIMIT_STACK": unix.RLIMIT_STACK,
}

// Invoked reports whether this process is a pause process the agent started.
func Invoked() bool { return len(os.Args) == 1 && os.Args[0] == Arg0 }

// Main sets the pause process up, reports, and waits for ever. It exits 0
// on SIGTERM or SIGINT, as Kubernetes' pause does.
func Main() {
	status := os.NewFile(statusFD, "status")
	err := setUp(os.NewFile(configFD, "config"))
	if err != nil {
		_, _ = io.WriteString(status, err.Error())
		os.Exit(1)
	}
	// Go would end the process on these; the C pause leaves them to the
	// kernel, which drops them for a pid namespace's init.
	signal.Ignore(unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE, unix.SIGALRM)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	_, _ = io.WriteString(status, Ready)
	_ = status.Close()
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited: as the init of the pod's pid
// namespace the pause inherits the orphans of the containers sharing it.
func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

func setUp(configFile *os.File) error {
	data, err := io.ReadAll(configFile)
	_ = configFile.Close()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	// The name ps shows, as for Kubernetes' pause binary (it would be
	// "exe", from /proc/self/exe); /proc/self/comm is the main thread's.
	_ = os.WriteFile("/proc/self/comm", []byte("pause"), 0)
	if err := setNames(cfg); err != nil {
		return err
	}
	if err := WriteSysctls("/proc/sys", cfg.Sysctls); err != nil {
		return err
	}
	if cfg.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(*cfg.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	for _, r := range cfg.Rlimits {
		if err := unix.Setrlimit(r.Resource, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return fmt.Errorf("set rlimit %d to %d/%d: %w", r.Resource, r.Soft, r.Hard, err)
		}
	}
	if err := pivot(cfg.Root); err != nil {
		return err
	}
	return dropPrivileges(cfg)
}

// setNames sets the hostname and domain name in the pause's uts namespace.
func setNames(cfg Config) error {
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", cfg.Hostname, err)
		}
	}
	if cfg.Domainname != "" {
		if err := unix.Setdomainname([]byte(cfg.Domainname)); err != nil {
			return fmt.Errorf("set domain name %q: %w", cfg.Domainname, err)
		}
	}
	return nil
}

// WriteSysctls writes each key=value under procSys (/proc/sys), where a
// namespaced sysctl applies to the writer's namespace.
func WriteSysctls(procSys string, sysctls map[string]string) error {
	for key, value := range sysctls {
		p := filepath.Join(procSys, strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%q: %w", key, value, err)
		}
	}
	return nil
}

// pivot makes root, bound read-only, the pause's whole mount namespace:
// nothing propagates between it and the agent's, and the guest's own root
// (the agent, the OCI runtimes, every container's bundle) is not reachable
// through /proc/<pid>/root by a container that shares the pod's pid
// namespace.
func pivot(root string) error {
	steps := []struct {
		what string
		do   func() error
	}{
		{"make / private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"bind " + root, func() error { return unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"remount " + root + " read-only", func() error {
			return unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
		{"enter " + root, func() error { return unix.Chdir(root) }},
		{"pivot_root", func() error { return unix.PivotRoot(".", ".") }},
		{"detach the old root", func() error { return unix.Unmount(".", unix.MNT_DETACH) }},
		{"enter /", func() error { return unix.Chdir("/") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("root %s: %s: %w", root, s.what, err)
		}
	}
	return nil
}

// dropPrivileges becomes the spec's user and keeps no capability. Changing
// to a non-zero uid clears them on every thread; for uid 0 they are
// cleared on every thread explicitly, which needs a binary built without
// cgo (the agent is one).
func dropPrivileges(cfg Config) error {
	groups := make([]int, len(cfg.AdditionalGids))
	for i, g := range cfg.AdditionalGids {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("set groups %v: %w", groups, err)
	}
	if err := syscall.Setresgid(int(cfg.GID), int(cfg.GID), int(cfg.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", cfg.GID, err)
	}
	if err := syscall.Setresuid(int(cfg.UID), int(cfg.UID), int(cfg.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", cfg.UID, err)
	}
	if cfg.UID != 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&none[0])), 0); errno != 0 {
		return fmt.Errorf("drop capabilities: %w", errno)
	}
	return nil
}
