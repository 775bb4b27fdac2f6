package hostcgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// idleKnobs are the ways to make a cgroup's processes take only the CPU
// nobody else wants, best first: cpu.idle (v1 and v2, Linux 5.15: the
// cgroup's tasks are SCHED_IDLE against their siblings), else the lowest
// weight (v2 cpu.weight 1, v1 cpu.shares 2).
var idleKnobs = []struct{ file, value string }{
	{"cpu.idle", "1"},
	{"cpu.weight", "1"},
	{"cpu.shares", "2"},
}

// SetIdle gives the cgroup the least CPU priority the host offers, in the
// hierarchy that has the cpu controller, and returns which knob it set
// ("cpu.idle=1", "cpu.weight=1" or "cpu.shares=2").
func (c *Cgroup) SetIdle() (string, error) {
	var errs []error
	for _, k := range idleKnobs {
		for _, h := range c.hs {
			file := filepath.Join(h.dir, c.path, k.file)
			err := writeExisting(file, k.value)
			if err == nil {
				return k.file + "=" + k.value, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("host cgroup %s: idle CPU priority: %w", c.path, err)
	}
	return "", fmt.Errorf("host cgroup %s: no cpu controller offers an idle priority (cpu.idle, cpu.weight, cpu.shares)", c.path)
}

// writeExisting writes value to a control file that must exist (cgroupfs
// refuses to create one, and its error would not say it is missing).
func writeExisting(file, value string) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Root is the root cgroup of every hierarchy, for a process that leaves a
// cgroup and has none of its own to go to. Never Delete it.
func Root() (*Cgroup, error) {
	hs, err := hostHierarchies()
	if err != nil {
		return nil, fmt.Errorf("root host cgroup: %w", err)
	}
	return &Cgroup{path: "/", hs: hs}, nil
}
