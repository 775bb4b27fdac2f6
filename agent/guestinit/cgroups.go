package guestinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// controllers are delegated from the root cgroup to the containers' cgroups
// when the kernel offers them. runc enables them further down each
// container's path itself.
var controllers = []string{"cpu", "cpuset", "io", "memory", "pids", "hugetlb"}

// enableControllers writes "+name" to root's cgroup.subtree_control for each
// wanted controller listed in cgroup.controllers. It writes one controller
// at a time so that one the kernel refuses does not hide the others.
func enableControllers(root string) error {
	data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read available controllers: %w", err)
	}
	available := strings.Fields(string(data))
	control := filepath.Join(root, "cgroup.subtree_control")
	var errs []error
	for _, c := range controllers {
		if !slices.Contains(available, c) {
			continue
		}
		if err := appendLine(control, "+"+c); err != nil {
			errs = append(errs, fmt.Errorf("enable %s controller: %w", c, err))
		}
	}
	return errors.Join(errs...)
}

// appendLine writes one line to a control file. Each write is a separate
// command to cgroupfs; O_APPEND changes nothing there.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
