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

	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/network"
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
// names: its rootfs mount in the share and, for the owner, the VM
// processes, the host cgroup they ran in and the whole state directory. It
// never signals a process that is not this sandbox's (the pid must still
// name the state directory in its command line, so a recycled pid is left
// alone).
func CleanupAfterCrash(r Record) error {
	if r.StateDir == "" || r.ContainerID == "" {
		return errors.New("incomplete sandbox record")
	}
	var errs []error
	if err := unmountAndRemove(filepath.Join(r.StateDir, "shared", filepath.Dir(guestspec.RootfsDir(r.ContainerID)))); err != nil {
		errs = append(errs, err)
	}
	if r.Owner {
		if err := killRecordedPids(r.StateDir); err != nil {
			errs = append(errs, err)
		}
		if ns, err := os.ReadFile(filepath.Join(r.StateDir, netnsFile)); err == nil && len(ns) > 0 {
			if err := network.Cleanup(string(ns)); err != nil {
				errs = append(errs, err)
			}
		}
		// After the processes: the kernel keeps a cgroup that holds one.
		if cg, err := os.ReadFile(filepath.Join(r.StateDir, cgroupFile)); err == nil && len(cg) > 0 {
			if err := hostcgroup.Remove(string(cg)); err != nil {
				errs = append(errs, err)
			}
		}
		if err := unmountAndRemove(r.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func killRecordedPids(stateDir string) error {
	b, err := os.ReadFile(filepath.Join(stateDir, pidsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec recordedPids
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("parse %s: %w", pidsFile, err)
	}
	for _, pid := range rec.Pids {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), stateDir) {
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
