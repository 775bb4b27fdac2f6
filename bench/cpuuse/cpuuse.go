// Package cpuuse measures where a host's CPU time went over a window: a
// snapshot of every process's CPU time (and of chosen processes' threads)
// before, another after, and the difference by component, as the caller
// classifies the processes. The host's busy and idle time over the same
// window come from /proc/stat, so that what no component claims (other
// processes, processes that came and went unreaped, the kernel's own
// work) is still counted as the rest.
package cpuuse

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// architecture Go runs on.
const userHZ = 100

// Proc is one process as a snapshot saw it; times in clock ticks.
type Proc struct {
	Pid, PPid int
	// Name is the command name (comm); Args the command line.
	Name string
	Args []string
	// Cgroup is the process's cgroup in the cpu hierarchy (v1), or its
	// v2 path.
	Cgroup string
	// Self is the process's own CPU time (every thread's, dead threads
	// included); Children that of its children it waited for.
	Self, Children uint64
	// Threads are the live threads' CPU times by name (threads of one
	// name added), when the snapshot read them.
	Threads map[string]uint64

	start uint64 // start time in ticks since boot: a pid reused is another process
}

// Snapshot is the host at one moment.
type Snapshot struct {
	At time.Time
	// Busy and Idle are the host's CPU times over all CPUs (/proc/stat:
	// idle and iowait are idle, the rest busy).
	Busy, Idle uint64
	Procs      []Proc
}

// Take reads every process; threads are read for the processes whose
// name threads says yes to (nil: none).
func Take(threads func(name string) bool) (*Snapshot, error) {
	s := &Snapshot{At: time.Now()}
	var err error
	if s.Busy, s.Idle, err = hostTimes(); err != nil {
		return nil, err
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := readProc(d)
		if err != nil {
			continue // gone meanwhile
		}
		if threads != nil && threads(p.Name) {
			p.Threads = readThreads(d)
		}
		p.Args, p.Cgroup = readArgs(d), readCgroup(p.Pid)
		s.Procs = append(s.Procs, p)
	}
	return s, nil
}

// Class names a process's component; Threads, when set, splits the
// process by thread name into subcomponents (name -> component), the
// threads not listed staying with Name.
type Class struct {
	Name    string
	Threads func(thread string) string
	// ChildrenName receives the CPU time of the children the process
	// waited for during the window ("" : Name).
	ChildrenName string
}

// Seconds is each component's CPU time over a window, in seconds.
type Seconds map[string]float64

// The components Diff adds of its own.
const (
	// Rest is the host's busy time no classified process accounts for.
	Rest = "rest_of_host"
	// Idle is the host's idle time (idle and iowait), over all CPUs.
	Idle = "idle"
)

// Add adds o's seconds to s's.
func (s Seconds) Add(o Seconds) {
	for k, v := range o {
		s[k] += v
	}
}

// Diff is the CPU time of each component between two snapshots, with
// Rest (the busy time no process of after claims) and Idle.
// classify sees the after snapshot's processes; a process new since
// before counts from zero; one gone by after is not seen (its time is in
// its parent's children's time once reaped, or in the rest).
func Diff(before, after *Snapshot, classify func(Proc) Class) Seconds {
	prev := map[[2]uint64]Proc{}
	for _, p := range before.Procs {
		prev[[2]uint64{uint64(p.Pid), p.start}] = p
	}
	out := Seconds{}
	var claimed uint64
	add := func(name string, ticks uint64) {
		out[name] += float64(ticks) / userHZ
		claimed += ticks
	}
	for _, p := range after.Procs {
		c := classify(p)
		if c.Name == "" {
			continue
		}
		old := prev[[2]uint64{uint64(p.Pid), p.start}]
		self := sub(p.Self, old.Self)
		if c.Threads != nil {
			for name, t := range p.Threads {
				if comp := c.Threads(name); comp != "" {
					d := min(sub(t, old.Threads[name]), self)
					add(comp, d)
					self -= d
				}
			}
		}
		add(c.Name, self)
		children := c.ChildrenName
		if children == "" {
			children = c.Name
		}
		add(children, sub(p.Children, old.Children))
	}
	busy := sub(after.Busy, before.Busy)
	out[Rest] = float64(sub(busy, claimed)) / userHZ
	out[Idle] = float64(sub(after.Idle, before.Idle)) / userHZ
	return out
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// hostTimes reads the "cpu" line of /proc/stat.
func hostTimes() (busy, idle uint64, _ error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		switch {
		case i == 3 || i == 4: // idle, iowait
			idle += n
		case i < 8: // user nice system irq softirq steal; guest times are in user already
			busy += n
		}
	}
	return busy, idle, nil
}

// readProc reads dir's stat.
func readProc(dir string) (Proc, error) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, err
	}
	pid, name, f, err := parseStat(b)
	if err != nil {
		return Proc{}, err
	}
	// Fields after the name, from state (field 3): ppid 4, utime 14,
	// stime 15, cutime 16, cstime 17, starttime 22.
	p := Proc{Pid: pid, Name: name}
	p.PPid = int(num(f, 4))
	p.Self = num(f, 14) + num(f, 15)
	p.Children = num(f, 16) + num(f, 17)
	p.start = num(f, 22)
	return p, nil
}

// parseStat splits a /proc stat line: pid, comm (which may hold spaces
// and parentheses) and the fields from the state on, so that f[n-3] is
// field n of proc(5).
func parseStat(b []byte) (pid int, name string, f []string, _ error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return 0, "", nil, fmt.Errorf("stat: no command name in %q", b)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return 0, "", nil, fmt.Errorf("stat: %w", err)
	}
	return pid, string(b[open+1 : end]), strings.Fields(string(b[end+1:])), nil
}

// num is field n (proc(5)'s numbering, from 3) of f, 0 if absent.
func num(f []string, n int) uint64 {
	if n-3 >= len(f) {
		return 0
	}
	v, _ := strconv.ParseInt(f[n-3], 10, 64)
	if v < 0 {
		return 0
	}
	return uint64(v)
}

// readThreads is the CPU time of dir's live threads by name.
func readThreads(dir string) map[string]uint64 {
	out := map[string]uint64{}
	tasks, _ := filepath.Glob(filepath.Join(dir, "task", "[0-9]*"))
	for _, t := range tasks {
		if p, err := readProc(t); err == nil {
			out[p.Name] += p.Self
		}
	}
	return out
}

func readArgs(dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// readCgroup is process pid's cgroup in the cpu hierarchy (cgroup v1),
// or its unified one.
func readCgroup(pid int) string {
	cgs, _ := hostbed.ProcCgroups(pid)
	for controllers, path := range cgs {
		if slices.Contains(strings.Split(controllers, ","), "cpu") {
			return path
		}
	}
	return cgs[""]
}
