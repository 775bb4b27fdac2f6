package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Leaks lists what podvm may leave on a host that still exists: processes
// (qemu, virtiofsd, the shim), mounts and sockets. Each entry names the
// object and why it counts. match narrows the check to one container or
// sandbox (an id or a path fragment); empty matches everything of podvm.
func Leaks(match string) []string {
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
		if strings.Contains(mp, "podvm") && (match == "" || strings.Contains(mp, match)) {
			out = append(out, "mount: "+mp)
		}
	}
	filepath.WalkDir("/run/podvm", func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSocket != 0 && (match == "" || strings.Contains(path, match)) {
			out = append(out, "socket: "+path)
		}
		return nil
	})
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
