package crash

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Files in a sandbox's state directory that name what the sandbox holds on
// the host, for cleanupStateDir.
const (
	// netnsFile records the pod's network namespace, so that cleanup
	// after a dead shim can remove the taps and tc filters podvm added
	// to it.
	netnsFile = "netns"
	// cgroupFile records the host cgroup the shim created.
	cgroupFile = "host-cgroup"
	// pidsFile records the VM's host processes.
	pidsFile = "pids.json"
)

// NoteNetNS records the pod's network namespace in stateDir.
func NoteNetNS(stateDir, path string) error {
	if err := os.WriteFile(filepath.Join(stateDir, netnsFile), []byte(path), 0o600); err != nil {
		return fmt.Errorf("record network namespace: %w", err)
	}
	return nil
}

// NoteCgroup records the sandbox's host cgroup in stateDir. It is recorded
// before it exists, so that a crash in between leaves no cgroup unrecorded.
func NoteCgroup(stateDir, path string) error {
	if err := os.WriteFile(filepath.Join(stateDir, cgroupFile), []byte(path), 0o600); err != nil {
		return fmt.Errorf("record host cgroup: %w", err)
	}
	return nil
}

type recordedPids struct {
	StateDir string `json:"state_dir"`
	Pids     []int  `json:"pids"`
}

// NotePids records the VM's host processes in stateDir, so that a later
// `shim delete` (after the shim itself died) can stop them.
func NotePids(stateDir string, pids []int) error {
	b, _ := json.Marshal(recordedPids{StateDir: stateDir, Pids: pids})
	if err := os.WriteFile(filepath.Join(stateDir, pidsFile), b, 0o600); err != nil {
		return fmt.Errorf("record VM pids: %w", err)
	}
	return nil
}

// killRecordedPids kills the VM processes of a dead shim's sandbox: those
// recorded in pids.json and any other that names the state directory on
// its command line (a VMM started after the last record). A recorded pid
// is killed only if it still names the directory, so a recycled pid is
// left alone.
func killRecordedPids(stateDir string) error {
	var pids []int
	b, err := os.ReadFile(filepath.Join(stateDir, pidsFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		var rec recordedPids
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("parse %s: %w", pidsFile, err)
		}
		pids = rec.Pids
	}
	pids = append(pids, processesNaming(stateDir)...)
	for _, pid := range pids {
		if !namesDir(pid, stateDir) {
			continue
		}
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100; i++ {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// namesDir reports whether process pid has dir, or a path below it, on its
// command line or open as a file: a jailed QEMU names its state dir only
// as /proc/self/fd/N (docs/design.md, "QEMU's jail").
func namesDir(pid int, dir string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if strings.Contains(arg, dir+"/") || strings.HasSuffix(arg, dir) {
			return true
		}
	}
	fds, _ := os.ReadDir(proc + "/fd")
	for _, fd := range fds {
		if t, err := os.Readlink(proc + "/fd/" + fd.Name()); err == nil && (t == dir || strings.HasPrefix(t, dir+"/")) {
			return true
		}
	}
	return false
}

// processesNaming lists the processes (other than this one) whose command
// line names dir or a path below it.
func processesNaming(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if namesDir(pid, dir) {
			out = append(out, pid)
		}
	}
	return out
}
