package testenv

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultStateDir is podvm's runtime.state_dir in the installed config.
const DefaultStateDir = "/run/podvm"

// Leaks lists what podvm left on this host of the sandbox or container
// match names (an id; a test never checks the whole host, which other
// users of the machine share): see LeaksIn. Empty match checks
// processes, mounts and sockets of every podvm sandbox.
func Leaks(match string) []string { return LeaksIn(DefaultStateDir, match) }

// LeaksIn lists everything podvm may leave on a host of one sandbox or
// container, under podvm state directory stateDir. Each entry names the
// object and what it is:
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
// Taps live in the pod's network namespace and go with it; CRILeaks checks
// the host namespace for podvm taps and the namespaces containerd mounted,
// and ShimSocketLeaks containerd's shim sockets.
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
		out = append(out, fmt.Sprintf("process %d: %s", pid, truncate(cmd, 160)))
	}
	for _, mp := range mountsUnder("/") {
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
				out = append(out, fmt.Sprintf("host cgroup: %s (processes: %s)", path, readTrim(filepath.Join(path, "cgroup.procs"))))
				return filepath.SkipDir
			}
			return nil
		})
	}
	return out
}

// ShimSocketLeaks names the shim sockets of groups (a pod's sandbox id, a
// lone container's id) in containerd namespace ns that still exist: the
// socket containerd-shim-podvm-v2 listens on, which it removes when it
// ends and containerd's `shim delete` removes after it died.
func (c *Containerd) ShimSocketLeaks(ns string, groups ...string) []string {
	var out []string
	for _, g := range groups {
		sum := sha256.Sum256([]byte(filepath.Join(c.Address, ns, g)))
		for _, root := range []string{"/run/containerd/s", filepath.Join(c.Dir, "state", "s")} {
			p := filepath.Join(root, fmt.Sprintf("%x", sum))
			if _, err := os.Stat(p); err == nil {
				out = append(out, fmt.Sprintf("shim socket of %s: %s", g, p))
			}
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := f[4]; dir == "/" || mp == dir || strings.HasPrefix(mp, strings.TrimSuffix(dir, "/")+"/") {
			out = append(out, mp)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
