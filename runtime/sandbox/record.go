package sandbox

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

// recordFile ties a container's bundle to its sandbox, so that cleanup after
// a dead shim (containerd's `shim delete`) knows what to undo.
const recordFile = "podvm.json"

// Record is what a bundle remembers about its sandbox.
type Record struct {
	SandboxID   string `json:"sandbox_id"`
	StateDir    string `json:"state_dir"`
	ContainerID string `json:"container_id"`
	// Owner is set on the container whose Create booted the VM.
	Owner bool `json:"owner"`
}

// WriteRecord stores r in bundle.
func WriteRecord(bundle string, r Record) error {
	b, _ := json.Marshal(r)
	if err := os.WriteFile(filepath.Join(bundle, recordFile), b, 0o600); err != nil {
		return fmt.Errorf("record sandbox of container %s: %w", r.ContainerID, err)
	}
	return nil
}

// ReadRecord loads the record of bundle; ok is false when there is none.
func ReadRecord(bundle string) (r Record, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(bundle, recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, false, fmt.Errorf("parse %s: %w", filepath.Join(bundle, recordFile), err)
	}
	return r, true, nil
}

// RemoveRecord deletes the record of bundle.
func RemoveRecord(bundle string) { os.Remove(filepath.Join(bundle, recordFile)) }

// CleanupAfterCrash undoes what a shim that died left of the container r
// names: its rootfs and volume mounts in the share and, for the owner, the
// whole sandbox (see cleanupStateDir). A sandbox whose lock a live shim
// still holds is left to that shim.
func CleanupAfterCrash(r Record) error {
	if r.StateDir == "" || r.ContainerID == "" {
		return errors.New("incomplete sandbox record")
	}
	if strings.Contains(r.ContainerID, "/") || r.ContainerID == ".." || r.ContainerID == "." {
		return fmt.Errorf("sandbox record names container %q, which cannot name a directory", r.ContainerID)
	}
	var errs []error
	if err := unmountContainer(r.StateDir, r.ContainerID); err != nil {
		errs = append(errs, err)
	}
	if r.Owner {
		f, err := tryLock(r.StateDir, false)
		switch {
		case errors.Is(err, errLocked):
			errs = append(errs, fmt.Errorf("sandbox state directory %s: %w; left to that shim", r.StateDir, err))
		case err == nil || errors.Is(err, os.ErrNotExist):
			if err := cleanupStateDir(r.StateDir); err != nil {
				errs = append(errs, err)
			}
			if f != nil {
				f.Close()
			}
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
// command line.
func namesDir(pid int, dir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if strings.Contains(arg, dir+"/") || strings.HasSuffix(arg, dir) {
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
