// Package crash cleans up after a shim that died: the crash record in each
// container's bundle (what `shim delete` reads), the files in a sandbox's
// state directory that name what the sandbox holds on the host (VM pids,
// the pod's network namespace, the host cgroup), the lock that tells a live
// sandbox from a dead one, and the sweep that removes dead ones.
package crash

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/podvm/podvm/runtime/factory/cache"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// recordFile ties a container's bundle to its sandbox, so that cleanup after
// a dead shim (containerd's `shim delete`) knows what to undo.
const recordFile = "podvm.json"

// Record is a crash record: what a bundle remembers about its sandbox, so
// that a `shim delete` after the shim died can undo what it left.
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

// shares are the shares a sandbox's containers can be mounted in: the
// state dir's own, and a VM taken from the cache brings its share along in
// its claimed directory (docs/factory.md, section 8).
func shares(stateDir string) []share.Share {
	all := []share.Share{share.At(stateDir)}
	if claimed := filepath.Join(stateDir, cache.ClaimedName); dirExists(claimed) {
		all = append(all, share.At(claimed))
	}
	return all
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// RemoveRecord deletes the record of bundle.
func RemoveRecord(bundle string) { os.Remove(filepath.Join(bundle, recordFile)) }

// Cleanup undoes what a shim that died left of the container r names: its
// rootfs and volume mounts in the share and, for the owner, the whole
// sandbox (see cleanupStateDir). A sandbox whose lock a live shim still
// holds is left to that shim.
func Cleanup(r Record) error {
	if r.StateDir == "" || r.ContainerID == "" {
		return errors.New("incomplete sandbox record")
	}
	if strings.Contains(r.ContainerID, "/") || r.ContainerID == ".." || r.ContainerID == "." {
		return fmt.Errorf("sandbox record names container %q, which cannot name a directory", r.ContainerID)
	}
	var errs []error
	for _, sh := range shares(r.StateDir) {
		if err := sh.UnmountContainer(r.ContainerID); err != nil {
			errs = append(errs, err)
		}
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
