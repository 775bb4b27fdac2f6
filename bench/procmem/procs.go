package procmem

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Process is one host process.
type Process struct {
	Pid, PPid int
	// Name is the base name of argv[0].
	Name string
	Args []string
}

// Cmdline is the command line, arguments joined by spaces.
func (p Process) Cmdline() string { return strings.Join(p.Args, " ") }

// List lists the host's processes (kernel threads, which have no command
// line, left out), by pid.
func List() []Process {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []Process
	for _, s := range stats {
		dir := filepath.Dir(s)
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue
		}
		st, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		ppid, err := ParsePPid(string(st))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		out = append(out, Process{Pid: pid, PPid: ppid, Name: filepath.Base(args[0]), Args: args})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

// ParsePPid reads the parent pid from /proc/<pid>/stat text. The command
// name (field 2) may hold spaces and parentheses; it ends at the last ')'.
func ParsePPid(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("stat %q: too few fields", stat)
	}
	return strconv.Atoi(f[1])
}

// Descendants lists the pids of every process below pid in procs.
func Descendants(procs []Process, pid int) []int {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPid] = append(children[p.PPid], p.Pid)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	sort.Ints(out)
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times:
// 100 on every Linux architecture the project runs on.
const clockTicks = 100

// ParseCPUSeconds reads the CPU time (user + system) from /proc/<pid>/stat
// text.
func ParseCPUSeconds(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	// After the name: state(3) ppid ... utime(14) stime(15).
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat %q: too few fields", stat)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat %q: utime/stime: %v %v", stat, err1, err2)
	}
	return float64(utime+stime) / clockTicks, nil
}

// CPUSeconds is the CPU time process pid has used, all its threads.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseCPUSeconds(string(b))
}

// ThreadCPUSeconds is the CPU time of process pid's live threads whose
// name (comm) match says yes to: QEMU names its vCPU threads "CPU n/TCG"
// or "CPU n/KVM" (-name ...,debug-threads=on).
func ThreadCPUSeconds(pid int, match func(name string) bool) (float64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/stat", pid))
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended meanwhile
		}
		stat := string(b)
		open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
		if open < 0 || end < open || !match(stat[open+1:end]) {
			continue
		}
		s, err := ParseCPUSeconds(stat)
		if err != nil {
			return 0, err
		}
		total += s
	}
	return total, nil
}

// IsVCPUThread says whether a QEMU thread name is a vCPU's.
func IsVCPUThread(name string) bool { return strings.HasPrefix(name, "CPU ") }
