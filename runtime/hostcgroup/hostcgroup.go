// Package hostcgroup puts a pod VM's host processes (the VMM and virtiofsd)
// into the cgroup the pod's sandbox spec names, as Kata's
// sandbox_cgroup_only does: the pod's host memory and CPU are then charged
// to the pod, so the kubelet's pod-level limits and the RuntimeClass's
// overhead.podFixed apply to the VM, and a tool finds a pod's VMM by the pod
// UID in /proc/<pid>/cgroup.
//
// cgroup v1 (and the hybrid layout) gets the cgroup in every mounted
// hierarchy (cpu, cpuacct, memory, pids, ..., the named systemd one and
// hybrid's empty unified one); cgroup v2 in the unified hierarchy. Only the
// leaf (the sandbox's own cgroup) is created and removed here: its parent is
// the kubelet's pod cgroup, which the kubelet owns and limits.
package hostcgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroup is one cgroup on the host, in every hierarchy.
type Cgroup struct {
	path string
	hs   []hierarchy
}

// Create makes cgroup path (a ParsePath result) in every hierarchy, with
// its missing parents, and sets no limit of its own.
func Create(path string) (*Cgroup, error) {
	hs, err := hostHierarchies()
	if err != nil {
		return nil, fmt.Errorf("create host cgroup %s: %w", path, err)
	}
	return create(hs, path)
}

func create(hs []hierarchy, path string) (*Cgroup, error) {
	c := &Cgroup{path: path, hs: hs}
	for _, h := range hs {
		if err := h.mkdir(path); err != nil {
			c.Delete() // what was made so far; nothing runs in it
			return nil, fmt.Errorf("create host cgroup %s: %w", path, err)
		}
	}
	return c, nil
}

// Path is the cgroup's path below each hierarchy's root.
func (c *Cgroup) Path() string { return c.path }

// Add moves process pid, with all its threads, into the cgroup in every
// hierarchy.
func (c *Cgroup) Add(pid int) error {
	for _, h := range c.hs {
		if err := writeProcs(filepath.Join(h.dir, c.path, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("move pid %d into host cgroup %s (%s): %w", pid, c.path, h.dir, err)
		}
	}
	return nil
}

// writeProcs writes pid to a cgroup.procs file. A process that is still
// being forked (TASK_NEW) is refused with EINVAL for a moment; runc and
// containerd retry too.
func writeProcs(file string, pid int) error {
	var err error
	for range 10 {
		err = os.WriteFile(file, []byte(strconv.Itoa(pid)), 0o644)
		if !errors.Is(err, syscall.EINVAL) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// Delete removes the cgroup from every hierarchy. The kernel refuses while
// a process is in it; a process that was just killed and reaped may take a
// moment to leave, so EBUSY is retried for up to a second in all. A cgroup
// already gone is not an error.
func (c *Cgroup) Delete() error {
	var errs []error
	deadline := time.Now().Add(time.Second)
	for _, h := range c.hs {
		if err := rmdirRetry(filepath.Join(h.dir, c.path), deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove host cgroup %s: %w", c.path, err)
	}
	return nil
}

func rmdirRetry(dir string, deadline time.Time) error {
	delay := 5 * time.Millisecond
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			if errors.Is(err, syscall.EBUSY) {
				err = fmt.Errorf("%w (processes left: %s)", err, procsOf(dir))
			}
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func procsOf(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if s := strings.Join(strings.Fields(string(b)), " "); s != "" {
		return s
	}
	return "none"
}

// Remove deletes cgroup path, left by a shim that died, from every
// hierarchy where it exists.
func Remove(path string) error {
	hs, err := hostHierarchies()
	if err != nil {
		return fmt.Errorf("remove host cgroup %s: %w", path, err)
	}
	return (&Cgroup{path: path, hs: hs}).Delete()
}

// PidsMax reads pids.max of cgroup path: the kubelet writes podPidsLimit
// there on the pod cgroup. limited is false when there is no limit
// ("max"), no such cgroup, or no pids controller.
func PidsMax(path string) (limit int64, limited bool, err error) {
	hs, err := hostHierarchies()
	if err != nil {
		return 0, false, fmt.Errorf("read pids.max of host cgroup %s: %w", path, err)
	}
	for _, h := range hs {
		if h.pids {
			return readPidsMax(filepath.Join(h.dir, path, "pids.max"))
		}
	}
	return 0, false, nil
}

// readPidsMax parses a pids.max file: a number, or "max".
func readPidsMax(file string) (int64, bool, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", file, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%s: %q is neither a number of processes nor \"max\"", file, v)
	}
	return n, true, nil
}
