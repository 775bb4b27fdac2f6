package hostbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultStateDir is podvm's runtime.state_dir in the installed config.
const DefaultStateDir = "/run/podvm"

// Leaks lists what podvm left on this host of the sandbox or container
// match names (an id; a test never checks the whole host, which other
// users of the machine share), under DefaultStateDir: see LeaksIn. An
// empty match checks processes, mounts and sockets of every podvm sandbox.
func Leaks(match string) []string { return LeaksIn(DefaultStateDir, match) }

// LeaksIn lists everything podvm may leave on a host of one sandbox or
// container whose id match names, under podvm state directory stateDir.
// Each entry names the object and what it is:
//
//   - processes: containerd-shim-podvm-v2, and QEMU or virtiofsd of a
//     podvm VM, whose command line names match;
//   - mounts whose path names podvm (or lies under stateDir) and match:
//     container root filesystems and volumes in a sandbox's share;
//   - the sandbox's state directory (stateDir/sandboxes/<id>), or a
//     container's directory in a sandbox's share;
//   - sockets under stateDir (QMP, agent, virtiofsd);
//   - host cgroups, in any hierarchy, named after match (the sandbox's
//     leaf below the pod cgroup).
//
// An empty match checks processes, mounts and sockets of every podvm
// sandbox. Taps live in the pod's network namespace and go with it; see
// HostTaps for those left in the host's.
func LeaksIn(stateDir, match string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		exe := filepath.Base(strings.Fields(cmd)[0])
		podvm := exe == "containerd-shim-podvm-v2" || strings.Contains(cmd, "podvm") &&
			(strings.HasPrefix(exe, "qemu-system") || exe == "virtiofsd")
		if !podvm || match != "" && !strings.Contains(cmd, match) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		out = append(out, fmt.Sprintf("process %d: %s", pid, Truncate(cmd, 160)))
	}
	for _, mp := range MountsUnder("/") {
		ours := strings.Contains(mp, "podvm") || strings.HasPrefix(mp, stateDir+"/")
		if ours && (match == "" || strings.Contains(mp, match)) {
			out = append(out, "mount: "+mp)
		}
	}
	filepath.WalkDir(stateDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSocket != 0 && (match == "" || strings.Contains(path, match)) {
			out = append(out, "socket: "+path)
		}
		return nil
	})
	if match == "" {
		return out
	}
	sandboxes := filepath.Join(stateDir, "sandboxes")
	dirs, _ := filepath.Glob(filepath.Join(sandboxes, "*"))
	for _, sub := range []string{"mounts", "shared"} {
		more, _ := filepath.Glob(filepath.Join(sandboxes, "*", sub, "*"))
		dirs = append(dirs, more...)
	}
	for _, d := range dirs {
		if strings.Contains(filepath.Base(d), match) {
			out = append(out, "state directory: "+d)
		}
	}
	for _, mp := range CgroupMounts() {
		filepath.WalkDir(mp, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != mp && strings.Contains(d.Name(), match) {
				out = append(out, cgroupLeak(path))
				return filepath.SkipDir
			}
			return nil
		})
	}
	return out
}

// HostTaps names podvm's taps in the host network namespace (they belong
// in pod namespaces), sorted.
func HostTaps() []string {
	taps, _ := filepath.Glob("/sys/class/net/*_podvm")
	out := make([]string, 0, len(taps))
	for _, t := range taps {
		out = append(out, filepath.Base(t))
	}
	return out
}

// MountsUnder lists the mount points at or below any of dirs ("/" is
// every mount), the last mounted first: the order to unmount them in.
func MountsUnder(dirs ...string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return mountsUnder(string(b), dirs)
}

func mountsUnder(mountinfo string, dirs []string) []string {
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, strings.TrimSuffix(d, "/")+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// UnmountAll detaches every mount at or below dirs, the last mounted
// first, and returns the mount points it unmounted and those it could not
// (with the reason).
func UnmountAll(dirs ...string) (unmounted, failed []string) {
	for _, mp := range MountsUnder(dirs...) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			failed = append(failed, fmt.Sprintf("%s: %v", mp, err))
			continue
		}
		unmounted = append(unmounted, mp)
	}
	return unmounted, failed
}

// unescapeMount undoes mountinfo's octal escapes of a path.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// Truncate shortens s to n bytes and "..." if it is longer.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
