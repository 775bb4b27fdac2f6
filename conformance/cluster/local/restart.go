package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/internal/hostbed"
)

// What podvm deploy's node installer needs of a local cluster: a
// containerd that reads drop-in files (always: its config imports
// ContainerdDropInDir), one without the podvm handler
// (Options.WithoutPodvmHandler), and a way to restart it from inside the
// installer's pod (RestartContainerd, `podvm cluster restart-containerd`).

// ContainerdConfig is the main configuration file of the cluster's containerd.
func (p *Provider) ContainerdConfig() string { return p.l.containerdConfig() }

// ContainerdDropInDir is the directory whose *.toml files the cluster's
// containerd imports.
func (p *Provider) ContainerdDropInDir() string { return p.l.containerdDropInDir() }

// ContainerdSocket is the cluster's CRI socket.
func (p *Provider) ContainerdSocket() string { return p.l.containerdSocket() }

// RegistryAddr is host:port of the cluster's registry on 127.0.0.1; an
// image pushed there under that address can be pulled by the cluster.
func (p *Provider) RegistryAddr() (string, error) {
	b, err := os.ReadFile(p.l.registryAddrFile())
	if err != nil {
		return "", fmt.Errorf("the cluster's registry address: %w (is the cluster up?)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// APIServerURL is the API server's address on the node network.
func (p *Provider) APIServerURL() (string, error) {
	s, ok := p.loadState()
	if !ok {
		return "", fmt.Errorf("no local cluster in %s", p.opts.Dir)
	}
	return p.l.apiServerURL(s), nil
}

// envRestartEntered marks the re-executed restart process that already
// joined containerd's namespaces.
const envRestartEntered = "PODVM_RESTART_CONTAINERD_ENTERED"

// RestartContainerd restarts the containerd of the local cluster in dir,
// as `podvm cluster up` ran it: the same command line, environment,
// working directory, namespaces, cgroups, resource limits and OOM score,
// its log appended to, its pid file updated (so Status and Down find the
// new process). Shims, and the pods they run, outlive the restart.
//
// It can run anywhere that sees the host's processes, in particular
// chrooted from a privileged hostPID pod (the node installer): it then
// joins containerd's mount, UTS, IPC, network and cgroup namespaces with
// nsenter and moves itself into containerd's cgroups before starting the
// new process, which would otherwise live, and die, with the pod.
func RestartContainerd(ctx context.Context, dir string, out io.Writer) error {
	l := layout{dir: dir}
	pid, reexeced, err := intoContainerd(ctx, l, out)
	if err != nil || reexeced {
		return err
	}
	proc := fmt.Sprintf("/proc/%d", pid)
	argv, err := nulFields(proc + "/cmdline")
	if err != nil || len(argv) == 0 {
		return fmt.Errorf("read containerd's command line: %v", err)
	}
	env, err := nulFields(proc + "/environ")
	if err != nil {
		return fmt.Errorf("read containerd's environment: %w", err)
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return fmt.Errorf("read containerd's working directory: %w", err)
	}
	if err := joinCgroups(pid); err != nil {
		return err
	}
	copyLimits(pid, out)
	if b, err := os.ReadFile(proc + "/oom_score_adj"); err == nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", b, 0o644); err != nil {
			fmt.Fprintf(out, "warning: cannot give the new containerd the old one's oom_score_adj %s: %v\n", strings.TrimSpace(string(b)), err)
		}
	}

	fmt.Fprintf(out, "stopping containerd (pid %d)\n", pid)
	if err := stopDaemon(l, "containerd", 20*time.Second); err != nil {
		return err
	}
	newPID, err := startDaemon(l, daemon{name: "containerd", path: argv[0], args: argv[1:], environ: env, dir: cwd, appendLog: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "started containerd (pid %d), waiting for %s\n", newPID, l.containerdSocket())
	return waitFor(ctx, l, "containerd", time.Minute, dialReady("unix", l.containerdSocket()))
}

// intoContainerd makes sure this process runs in the namespaces of the
// cluster's containerd (whose pid it returns): when it does not, it runs
// this same command again inside them (reexeced: that run did the work).
func intoContainerd(ctx context.Context, l layout, out io.Writer) (pid int, reexeced bool, err error) {
	pid, why := daemonPID(l, "containerd")
	if pid == 0 {
		return 0, false, fmt.Errorf("the containerd of the local cluster in %s is not running (%s): bring the cluster up with 'podvm cluster up'", l.dir, why)
	}
	if sameNamespaces(pid) {
		return pid, false, nil
	}
	if os.Getenv(envRestartEntered) != "" {
		return 0, false, fmt.Errorf("still outside containerd's namespaces after nsenter (pid %d)", pid)
	}
	return pid, true, reexecInNamespaces(ctx, pid, out)
}

func nulFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimRight(string(b), "\x00")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, "\x00"), nil
}

// restartNamespaces are the namespaces containerd's children must share
// with it: mounts (snapshots, netns bind mounts), UTS, IPC, network and
// cgroup.
var restartNamespaces = []struct{ proc, flag string }{
	{"mnt", "--mount"}, {"uts", "--uts"}, {"ipc", "--ipc"}, {"net", "--net"}, {"cgroup", "--cgroup"},
}

func sameNamespaces(pid int) bool {
	for _, ns := range restartNamespaces {
		mine, err1 := os.Readlink("/proc/self/ns/" + ns.proc)
		theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.proc))
		if err1 != nil || err2 != nil || mine != theirs {
			return false
		}
	}
	return true
}

// reexecInNamespaces runs this same command again inside containerd's
// namespaces: a Go program cannot change its own mount namespace once
// it runs threads, so nsenter does it before exec.
func reexecInNamespaces(ctx context.Context, pid int, out io.Writer) error {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("restart containerd from outside its namespaces needs nsenter (util-linux) on the host: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"--target", strconv.Itoa(pid)}
	for _, ns := range restartNamespaces {
		args = append(args, ns.flag)
	}
	args = append(append(args, "--", self), os.Args[1:]...)
	fmt.Fprintf(out, "joining containerd's namespaces: nsenter %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, nsenter, args...)
	cmd.Env = append(os.Environ(), envRestartEntered+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restart containerd inside its namespaces: %w", err)
	}
	return nil
}

// joinCgroups moves this process into every cgroup containerd is in, so
// that the new containerd starts there and not in the caller's (a pod's)
// cgroups.
func joinCgroups(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("read containerd's cgroups: %w", err)
	}
	mounts := map[string]string{} // controller list ("" for v2) -> mount point
	for _, mp := range hostbed.CgroupMounts() {
		if m, err := cgroupControllers(mp); err == nil {
			mounts[m] = mp
		}
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mp, ok := mounts[sortedList(parts[1])]
		if !ok {
			continue // a hierarchy that is not mounted here
		}
		if err := os.WriteFile(filepath.Join(mp, parts[2], "cgroup.procs"), self, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("join containerd's cgroup %s in %s: %w", parts[2], mp, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupControllers names a hierarchy as /proc/PID/cgroup does: its
// controllers joined by commas, "name=X" for a named one, "" for v2.
func cgroupControllers(mountPoint string) (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || f[4] != mountPoint || len(g) < 3 {
			continue
		}
		if g[0] == "cgroup2" {
			return "", nil
		}
		var names []string
		for _, opt := range strings.Split(g[2], ",") {
			switch {
			case opt == "rw" || opt == "ro" || strings.HasPrefix(opt, "release_agent") || opt == "clone_children" ||
				opt == "noprefix" || opt == "xattr" || opt == "nsdelegate" || opt == "cpuset_v2_mode" || opt == "favordynmods":
			default:
				names = append(names, opt)
			}
		}
		return sortedList(strings.Join(names, ",")), nil
	}
	return "", fmt.Errorf("%s is not a cgroup mount", mountPoint)
}

// sortedList sorts a comma-separated list: a hierarchy's controllers are
// not listed in the same order everywhere.
func sortedList(s string) string {
	f := strings.Split(s, ",")
	sort.Strings(f)
	return strings.Join(f, ",")
}

// copyLimits gives this process (and so the new containerd) the old
// one's resource limits; one it may not raise is reported and left.
func copyLimits(pid int, out io.Writer) {
	for name, res := range map[string]int{"open files": unix.RLIMIT_NOFILE, "processes": unix.RLIMIT_NPROC,
		"locked memory": unix.RLIMIT_MEMLOCK, "core size": unix.RLIMIT_CORE} {
		var lim unix.Rlimit
		if err := unix.Prlimit(pid, res, nil, &lim); err != nil {
			continue
		}
		if err := unix.Prlimit(0, res, &lim, nil); err != nil {
			fmt.Fprintf(out, "warning: cannot give the new containerd the old one's limit of %s (%d/%d): %v\n", name, lim.Cur, lim.Max, err)
		}
	}
}
