// Package facts turns what the specs read inside pods and on nodes (/proc files, cgroup
// listings, kubelet configz) into numbers and records. Every function is pure, so each one has
// a table-driven test that needs no cluster.
package facts

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MemTotal returns MemTotal from /proc/meminfo, in bytes.
func MemTotal(meminfo string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal %q: %w", f[1], err)
			}
			if len(f) >= 3 && f[2] != "kB" {
				return 0, fmt.Errorf("MemTotal in unknown unit %q", f[2])
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no MemTotal line in meminfo")
}

// FreeTotal returns the total memory busybox free prints on its "Mem:" line, in bytes. free
// reports sysinfo(2), in KiB by default, so no file mounted over /proc/meminfo changes it.
func FreeTotal(out string) (int64, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Mem:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("free total %q: %w", f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no Mem: line in free's output")
}

// LoadavgTasks returns the kernel-wide number of scheduling entities (processes and threads)
// from /proc/loadavg's fourth field "running/total". No PID namespace filters it, so it counts
// every task of the kernel that answers.
func LoadavgTasks(loadavg string) (int, error) {
	f := strings.Fields(loadavg)
	if len(f) < 4 {
		return 0, fmt.Errorf("loadavg %q: want at least 4 fields", loadavg)
	}
	_, total, ok := strings.Cut(f[3], "/")
	if !ok {
		return 0, fmt.Errorf("loadavg field %q: want running/total", f[3])
	}
	n, err := strconv.Atoi(total)
	if err != nil {
		return 0, fmt.Errorf("loadavg total %q: %w", total, err)
	}
	return n, nil
}

// Uptime parses the first field of /proc/uptime ("12345.67 ...") into a duration.
func Uptime(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("empty uptime")
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("uptime %q: %w", f[0], err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// KeyValues parses the key=value lines a spec script prints. Lines without "=" are ignored;
// a repeated key keeps its last value.
func KeyValues(out string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), "=")
		if ok && k != "" {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

// Int64 parses a decimal integer after trimming white space.
func Int64(s string) (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}

// PodPidsLimit reads podPidsLimit from a kubelet's /configz answer. set is false when the
// field is absent or not positive (-1 and 0 both mean "no limit" to the kubelet).
func PodPidsLimit(configz []byte) (limit int64, set bool, err error) {
	var doc struct {
		KubeletConfig struct {
			PodPidsLimit *int64 `json:"podPidsLimit"`
		} `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(configz, &doc); err != nil {
		return 0, false, fmt.Errorf("parse kubelet configz: %w", err)
	}
	p := doc.KubeletConfig.PodPidsLimit
	if p == nil || *p <= 0 {
		return 0, false, nil
	}
	return *p, true, nil
}

// Median returns the median of xs (the mean of the middle two for an even count).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// CeilCPUs is the number of whole CPUs a CPU limit in millicores amounts to.
func CeilCPUs(milli int64) int64 {
	return (milli + 999) / 1000
}
