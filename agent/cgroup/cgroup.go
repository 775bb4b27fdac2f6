// Package cgroup finds a container's cgroup and reads what the agent needs
// from it: its processes, its OOM-kill counter and, on cgroup v2, the metrics
// containerd reports for `crictl stats`.
//
// The guest runs cgroup v2 only (guestinit mounts it on /sys/fs/cgroup).
// cgroup v1 is understood just far enough for the host tests, whose runc uses
// the host's v1 memory controller: processes, OOM-kill counter and kill.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Mountpoint is where the cgroup file system is mounted, in the guest and on
// a host alike.
const Mountpoint = "/sys/fs/cgroup"

// Cgroup is a container's cgroup. The zero value means unknown.
type Cgroup struct {
	// V2 says Path is in the unified hierarchy mounted at Root. Otherwise
	// (cgroup v1, host tests) Path is in the memory controller's
	// hierarchy mounted at Root.
	V2   bool
	Root string
	// Path is the cgroup's path in its hierarchy, e.g. /podvm/web-1.
	Path string
}

// Known reports whether c names a cgroup.
func (c Cgroup) Known() bool { return c.Root != "" }

// Dir is the cgroup's directory.
func (c Cgroup) Dir() string { return filepath.Join(c.Root, c.Path) }

func (c Cgroup) String() string {
	if c.V2 {
		return c.Path
	}
	return "memory:" + c.Path
}

// Unified reports whether /sys/fs/cgroup is a cgroup v2 mount.
func Unified() bool {
	var st unix.Statfs_t
	return unix.Statfs(Mountpoint, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// OfPid returns the cgroup of a process, as /proc/<pid>/cgroup names it in
// the agent's cgroup namespace.
func OfPid(pid int) (Cgroup, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	defer f.Close()
	c, err := parseProcCgroup(f, Unified())
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return c, nil
}

// FromPath returns the cgroup an absolute OCI cgroupsPath names, which is
// the same path in every hierarchy for runc's cgroupfs driver.
func FromPath(p string) (Cgroup, error) {
	if !path.IsAbs(p) {
		return Cgroup{}, fmt.Errorf("cgroup path %q is relative to runc's own cgroup", p)
	}
	if Unified() {
		return Cgroup{V2: true, Root: Mountpoint, Path: path.Clean(p)}, nil
	}
	return Cgroup{Root: filepath.Join(Mountpoint, "memory"), Path: path.Clean(p)}, nil
}

// parseProcCgroup reads /proc/<pid>/cgroup: the "0::" line on a unified
// system, else the memory controller's line.
func parseProcCgroup(f *os.File, unified bool) (Cgroup, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if unified && parts[0] == "0" && parts[1] == "" {
			return Cgroup{V2: true, Root: Mountpoint, Path: parts[2]}, nil
		}
		if !unified && hasController(parts[1], "memory") {
			return Cgroup{Root: filepath.Join(Mountpoint, "memory"), Path: parts[2]}, nil
		}
	}
	if err := sc.Err(); err != nil {
		return Cgroup{}, err
	}
	if unified {
		return Cgroup{}, errors.New("no cgroup v2 entry")
	}
	return Cgroup{}, errors.New("no cgroup v1 memory controller entry")
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// EventsFile is the file whose modification signals a new memory event
// (cgroup v2's memory.events, which the kernel notifies through inotify),
// or "" where there is none (v1).
func (c Cgroup) EventsFile() string {
	if !c.V2 {
		return ""
	}
	return filepath.Join(c.Dir(), "memory.events")
}

// OOMKills returns how many processes the OOM killer has killed in the
// cgroup and its descendants. The kernel raises the counter before it sends
// the SIGKILL, so it already counts a victim whose exit has been reaped.
func (c Cgroup) OOMKills() (uint64, error) {
	file := "memory.oom_control"
	if c.V2 {
		file = "memory.events"
	}
	return ReadKey(filepath.Join(c.Dir(), file), "oom_kill")
}

// ReadKey returns the value of key in a flat-keyed cgroup file of
// "key value" lines.
func ReadKey(file, key string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", file, key, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s", file, key)
}

// Procs returns the pids of every process in the cgroup and its
// descendants. A cgroup that no longer exists has none.
func (c Cgroup) Procs() ([]int, error) {
	var pids []int
	err := filepath.WalkDir(c.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for f := range strings.FieldsSeq(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("processes of cgroup %s: %w", c, err)
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the cgroup: at once through
// cgroup.kill where the kernel has it (v2, 5.14+), else one by one, which
// can miss a process forked meanwhile. It refuses a cgroup the agent
// itself is in, as Locate does: a container's cgroup never holds the
// agent, and killing one that does would kill the agent's neighbours (on
// a host test, the test runner's session: docs/agent.md, "The kill that
// reached the test runner").
func (c Cgroup) Kill() error {
	if pids, err := c.Procs(); err == nil && slices.Contains(pids, os.Getpid()) {
		return fmt.Errorf("kill cgroup %s: the agent (pid %d) is in it, so it is not a container's: refused", c, os.Getpid())
	}
	if c.V2 {
		err := os.WriteFile(filepath.Join(c.Dir(), "cgroup.kill"), []byte("1"), 0)
		if err == nil || errors.Is(err, fs.ErrNotExist) && !c.exists() {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kill cgroup %s: %w", c, err)
		}
	}
	pids, err := c.Procs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill pid %d of cgroup %s: %w", pid, c, err)
		}
	}
	return nil
}

func (c Cgroup) exists() bool {
	_, err := os.Stat(c.Dir())
	return err == nil
}

// Stat returns the cgroup v2 metrics containerd's CRI decodes for container
// stats. cgroup v1 has none of this format.
func (c Cgroup) Stat() (*stats.Metrics, error) {
	if !c.V2 {
		return nil, fmt.Errorf("cgroup %s is cgroup v1, which has no cgroup v2 metrics: %w", c, errdefs.ErrFailedPrecondition)
	}
	st, err := readMetrics(filepath.Join(c.Root, c.Path))
	if err != nil {
		return nil, fmt.Errorf("stat cgroup %s: %w", c, err)
	}
	return st, nil
}

// CreatePod creates the cgroup v2 p below root (with its parents), with the
// pids controller enabled on the way down, and sets its pids.max: a limit
// on all the processes of the pod's containers together, which the guest's
// runc creates below p. Creating it again only rewrites the limit.
func CreatePod(root, p string, pidsMax int64) error {
	clean := path.Clean(p)
	if !path.IsAbs(clean) || clean == "/" {
		return fmt.Errorf("pod cgroup %q: want an absolute path below the root: %w", p, errdefs.ErrInvalidArgument)
	}
	if pidsMax < 0 {
		return fmt.Errorf("pod cgroup %s: pids limit %d: %w", clean, pidsMax, errdefs.ErrInvalidArgument)
	}
	dir := root
	for part := range strings.SplitSeq(strings.TrimPrefix(clean, "/"), "/") {
		// A child has a controller's files only if its parent enables it.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+pids"), 0o644); err != nil {
			return fmt.Errorf("pod cgroup %s: enable the pids controller in %s: %w", clean, dir, err)
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pod cgroup %s: %w", clean, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.FormatInt(pidsMax, 10)), 0o644); err != nil {
		return fmt.Errorf("pod cgroup %s: set pids.max: %w", clean, err)
	}
	return nil
}
