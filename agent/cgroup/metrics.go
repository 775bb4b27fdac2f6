package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
)

// readMetrics reads the cgroup v2 directory dir into the metrics containerd's
// CRI decodes, field for field as the cgroups library's Manager.Stat fills
// them (TestReadMetricsMatchesLibrary compares the two). It is written out
// rather than taken from the library because the library's manager brings
// eBPF and D-Bus code with it: 1.2 MB of agent binary, and 15 to 30 ms of
// every guest boot under TCG (unpacking, loading and initialising it), for
// reading a handful of text files.
//
// Missing files read as zero (or as absent sections), as with the library:
// a controller that is not enabled has none. Malformed key-value files are
// errors naming the file.
func readMetrics(dir string) (*stats.Metrics, error) {
	file := func(name string) string { return filepath.Join(dir, name) }
	m := &stats.Metrics{
		Pids: &stats.PidsStat{Current: uintFile(file("pids.current")), Limit: uintFile(file("pids.max"))},
	}

	cpu, err := keyValues(file("cpu.stat"))
	if err != nil {
		return nil, err
	}
	m.CPU = &stats.CPUStat{}
	if cpu != nil {
		m.CPU = &stats.CPUStat{
			UsageUsec: cpu["usage_usec"], UserUsec: cpu["user_usec"], SystemUsec: cpu["system_usec"],
			NrPeriods: cpu["nr_periods"], NrThrottled: cpu["nr_throttled"], ThrottledUsec: cpu["throttled_usec"],
			NrBursts: cpu["nr_bursts"], BurstUsec: cpu["burst_usec"],
			PSI: pressure(file("cpu.pressure")),
		}
	}

	mem, err := keyValues(file("memory.stat"))
	if err != nil {
		return nil, err
	}
	m.Memory = &stats.MemoryStat{}
	if mem != nil {
		m.Memory = &stats.MemoryStat{
			Anon: mem["anon"], File: mem["file"], KernelStack: mem["kernel_stack"], Slab: mem["slab"],
			Sock: mem["sock"], Shmem: mem["shmem"], FileMapped: mem["file_mapped"], FileDirty: mem["file_dirty"],
			FileWriteback: mem["file_writeback"], AnonThp: mem["anon_thp"],
			InactiveAnon: mem["inactive_anon"], ActiveAnon: mem["active_anon"],
			InactiveFile: mem["inactive_file"], ActiveFile: mem["active_file"], Unevictable: mem["unevictable"],
			SlabReclaimable: mem["slab_reclaimable"], SlabUnreclaimable: mem["slab_unreclaimable"],
			Pgfault: mem["pgfault"], Pgmajfault: mem["pgmajfault"],
			WorkingsetRefault: mem["workingset_refault"], WorkingsetActivate: mem["workingset_activate"],
			WorkingsetNodereclaim: mem["workingset_nodereclaim"],
			Pgrefill:              mem["pgrefill"], Pgscan: mem["pgscan"], Pgsteal: mem["pgsteal"],
			Pgactivate: mem["pgactivate"], Pgdeactivate: mem["pgdeactivate"],
			Pglazyfree: mem["pglazyfree"], Pglazyfreed: mem["pglazyfreed"],
			ThpFaultAlloc: mem["thp_fault_alloc"], ThpCollapseAlloc: mem["thp_collapse_alloc"],
			Usage: uintFile(file("memory.current")), UsageLimit: uintFile(file("memory.max")),
			MaxUsage:  uintFile(file("memory.peak")),
			SwapUsage: uintFile(file("memory.swap.current")), SwapLimit: uintFile(file("memory.swap.max")),
			SwapMaxUsage: uintFile(file("memory.swap.peak")),
			PSI:          pressure(file("memory.pressure")),
		}
	}

	events, err := keyValues(file("memory.events"))
	if err != nil {
		return nil, err
	}
	if len(events) > 0 {
		m.MemoryEvents = &stats.MemoryEvents{Low: events["low"], High: events["high"], Max: events["max"],
			Oom: events["oom"], OomKill: events["oom_kill"], OomGroupKill: events["oom_group_kill"]}
	}

	m.Io = &stats.IOStat{Usage: ioUsage(file("io.stat")), PSI: pressure(file("io.pressure"))}
	m.Rdma = &stats.RdmaStat{Current: rdma(file("rdma.current")), Limit: rdma(file("rdma.max"))}
	for _, size := range hugePageSizes() {
		prefix := "hugetlb." + size + "."
		hp := &stats.HugeTlbStat{Pagesize: size, Max: uintFile(file(prefix + "max")), Current: uintFile(file(prefix + "current"))}
		if ev, err := keyValues(file(prefix + "events")); err == nil {
			hp.Failcnt = ev["max"]
		}
		m.Hugetlb = append(m.Hugetlb, hp)
	}
	return m, nil
}

// uintFile reads a one-value file: "max" is the largest value, a negative
// number is 0, and a missing or unreadable file is 0.
func uintFile(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return math.MaxUint64
	}
	v, _ := parseCount(s)
	return v
}

// parseCount parses a 64-bit counter; negative values (a limit of -1) are 0.
func parseCount(s string) (uint64, error) { return parseCountBits(s, 64) }

func parseCountBits(s string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, bits)
	if err == nil {
		return v, nil
	}
	if strings.HasPrefix(s, "-") {
		if _, ierr := strconv.ParseInt(s, 10, bits); ierr == nil || errors.Is(ierr, strconv.ErrRange) {
			return 0, nil
		}
	}
	return 0, err
}

// keyValues reads a "key value" per line file; nil without error when the
// file does not exist.
func keyValues(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("parse %s: line %q is not \"key value\"", path, sc.Text())
		}
		v, err := parseCount(f[1])
		if err != nil {
			return nil, fmt.Errorf("parse %s: line %q: %w", path, sc.Text(), err)
		}
		out[f[0]] = v
	}
	return out, sc.Err()
}

// pressure reads a PSI file ("some avg10=0.00 avg60=0.00 avg300=0.00
// total=0", and a "full" line); nil if it is missing or malformed.
func pressure(path string) *stats.PSIStats {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	psi := &stats.PSIStats{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		d := &stats.PSIData{}
		switch f[0] {
		case "some":
			psi.Some = d
		case "full":
			psi.Full = d
		default:
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil
			}
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				d.Total, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return nil
			}
		}
	}
	return psi
}

// ioUsage reads io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ..." per
// device. Like the library, it stops at a device number it cannot parse and
// skips values it cannot.
func ioUsage(path string) []*stats.IOEntry {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []*stats.IOEntry
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, " ")
		if len(f) < 2 {
			continue
		}
		maj, min, ok := strings.Cut(f[0], ":")
		if !ok || strings.Contains(min, ":") {
			continue
		}
		e := &stats.IOEntry{}
		if e.Major, err = strconv.ParseUint(maj, 10, 0); err != nil {
			return out
		}
		if e.Minor, err = strconv.ParseUint(min, 10, 0); err != nil {
			return out
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.Contains(v, "=") {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 0)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				e.Rbytes = n
			case "wbytes":
				e.Wbytes = n
			case "rios":
				e.Rios = n
			case "wios":
				e.Wios = n
			}
		}
		out = append(out, e)
	}
	return out
}

// rdma reads rdma.current or rdma.max: "DEVICE hca_handle=N hca_object=N"
// per device, "max" for no limit.
func rdma(path string) []*stats.RdmaEntry {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []*stats.RdmaEntry
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		e := &stats.RdmaEntry{Device: f[0]}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n := uint64(math.MaxUint32)
			if v != "max" {
				if n, err = parseCountBits(v, 32); err != nil {
					continue
				}
			}
			switch k {
			case "hca_handle":
				e.HcaHandles = uint32(n)
			case "hca_object":
				e.HcaObjects = uint32(n)
			}
		}
		out = append(out, e)
	}
	return out
}

var (
	pageSizesOnce sync.Once
	pageSizes     []string
)

// hugePageSizes names the huge page sizes of this kernel as cgroup files do
// ("2MB", "1GB"), from /sys/kernel/mm/hugepages/hugepages-<N>kB, once.
func hugePageSizes() []string {
	pageSizesOnce.Do(func() {
		names, err := readDirNames("/sys/kernel/mm/hugepages")
		if err != nil {
			return
		}
		for _, name := range names {
			kb, ok := strings.CutPrefix(name, "hugepages-")
			if !ok {
				continue
			}
			kb, ok = strings.CutSuffix(kb, "kB")
			if !ok {
				continue
			}
			n, err := strconv.Atoi(kb)
			if err != nil {
				continue
			}
			switch {
			case n >= 1<<20:
				pageSizes = append(pageSizes, strconv.Itoa(n>>20)+"GB")
			case n >= 1<<10:
				pageSizes = append(pageSizes, strconv.Itoa(n>>10)+"MB")
			default:
				pageSizes = append(pageSizes, kb+"KB")
			}
		}
	})
	return pageSizes
}

// readDirNames lists a directory in the order the file system gives, as
// the library does (no sorting), so both list page sizes alike.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(0)
}
