package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// DefaultCPUPeriod is the kernel's CFS bandwidth period, in µs, for a
// cgroup whose period was never set.
const DefaultCPUPeriod = 100000

// CPUMax is a cgroup v2 CPU limit, the content of cpu.max: at most Quota µs
// of CPU time in every Period µs. A negative Quota is "max": no limit.
type CPUMax struct {
	Quota  int64
	Period uint64
}

// Limited reports whether m limits the CPU at all.
func (m CPUMax) Limited() bool { return m.Quota >= 0 }

// String is m as cpu.max reads and takes it: "1000 100000", "max 100000".
func (m CPUMax) String() string {
	if !m.Limited() {
		return "max " + strconv.FormatUint(m.Period, 10)
	}
	return strconv.FormatInt(m.Quota, 10) + " " + strconv.FormatUint(m.Period, 10)
}

// ParseCPUMax reads cpu.max's content.
func ParseCPUMax(s string) (CPUMax, error) {
	quota, period, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return CPUMax{}, fmt.Errorf("cpu.max %q: want \"<quota|max> <period>\": %w", s, errdefs.ErrInvalidArgument)
	}
	m := CPUMax{Quota: -1}
	var err error
	if m.Period, err = strconv.ParseUint(period, 10, 64); err != nil || m.Period == 0 {
		return CPUMax{}, fmt.Errorf("cpu.max %q: period: %w", s, errdefs.ErrInvalidArgument)
	}
	if quota != "max" {
		if m.Quota, err = strconv.ParseInt(quota, 10, 64); err != nil || m.Quota < 0 {
			return CPUMax{}, fmt.Errorf("cpu.max %q: quota: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return m, nil
}

// CPUMax reads the cgroup's CPU limit (cgroup v2 only).
func (c Cgroup) CPUMax() (CPUMax, error) {
	if !c.V2 {
		return CPUMax{}, fmt.Errorf("cpu.max of cgroup %s: cgroup v1 has none: %w", c, errdefs.ErrFailedPrecondition)
	}
	data, err := os.ReadFile(filepath.Join(c.Dir(), "cpu.max"))
	if err != nil {
		return CPUMax{}, fmt.Errorf("cpu.max of cgroup %s: %w", c, err)
	}
	return ParseCPUMax(string(data))
}

// SetCPUMax writes the cgroup's CPU limit (cgroup v2 only), as runc's
// cgroup manager would; the OCI runtime's own record of the limit is left
// as it is.
func (c Cgroup) SetCPUMax(m CPUMax) error {
	if !c.V2 {
		return fmt.Errorf("set cpu.max of cgroup %s: cgroup v1 has none: %w", c, errdefs.ErrFailedPrecondition)
	}
	if m.Period == 0 {
		return errors.New("set cpu.max: period 0")
	}
	if err := os.WriteFile(filepath.Join(c.Dir(), "cpu.max"), []byte(m.String()), 0o644); err != nil {
		return fmt.Errorf("set cpu.max of cgroup %s to %q: %w", c, m, err)
	}
	return nil
}
