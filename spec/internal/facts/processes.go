package facts

import (
	"bufio"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// ProcessListingScript prints, for every process in the /proc it sees, a record the function
// Processes parses: a "@@ <pid>" line, the process's stat line, its cgroup lines, and
// "exe <path>". Only busybox applets are used.
const ProcessListingScript = `for d in /proc/[0-9]*; do
  [ -r "$d/stat" ] || continue
  echo "@@ ${d#/proc/}"
  cat "$d/stat" "$d/cgroup" 2>/dev/null
  echo "exe $(readlink "$d/exe" 2>/dev/null)"
done`

// Process is one process from a listing.
type Process struct {
	PID       int
	Comm      string
	StartTime uint64 // clock ticks after boot; with PID it names one process for good
	Exe       string
	Cgroups   []string // "hierarchy-id:controllers:path" lines
}

// Processes parses the output of ProcessListingScript. Processes that exited while being
// listed (no stat line) are dropped.
func Processes(out string) []Process {
	var procs []Process
	var cur *Process
	flush := func() {
		if cur != nil && cur.Comm != "" {
			procs = append(procs, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "@@ "):
			flush()
			pid, err := strconv.Atoi(strings.TrimSpace(line[3:]))
			if err != nil {
				continue
			}
			cur = &Process{PID: pid}
		case cur == nil:
		case strings.HasPrefix(line, "exe "):
			cur.Exe = strings.TrimSpace(line[4:])
		case cur.Comm == "" && strings.Contains(line, "(") && strings.Contains(line, ")"):
			cur.Comm, cur.StartTime = parseStat(line)
		case isCgroupLine(line):
			cur.Cgroups = append(cur.Cgroups, line)
		}
	}
	flush()
	return procs
}

// parseStat takes comm and starttime (field 22) from a /proc/<pid>/stat line. comm is the
// text between the first "(" and the last ")", since it may itself hold spaces and brackets.
func parseStat(line string) (comm string, start uint64) {
	open := strings.Index(line, "(")
	closing := strings.LastIndex(line, ")")
	if open < 0 || closing < open {
		return "", 0
	}
	comm = line[open+1 : closing]
	rest := strings.Fields(line[closing+1:])
	// rest[0] is field 3 (state); starttime is field 22.
	if len(rest) > 19 {
		start, _ = strconv.ParseUint(rest[19], 10, 64)
	}
	return comm, start
}

var cgroupLine = regexp.MustCompile(`^\d+:[^:]*:/`)

func isCgroupLine(line string) bool { return cgroupLine.MatchString(line) }

// PodCgroupNames are the spellings of a pod's UID in cgroup directory names: the cgroupfs
// driver uses "pod<uid>", the systemd driver "pod<uid with _ for ->".
func PodCgroupNames(uid string) []string {
	return []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
}

// InPodCgroup reports whether any of the process's cgroups belongs to the pod with this UID.
func (p Process) InPodCgroup(uid string) bool {
	for _, cg := range p.Cgroups {
		for _, name := range PodCgroupNames(uid) {
			if strings.Contains(cg, name) {
				return true
			}
		}
	}
	return false
}

// InPod returns the processes charged to the pod's cgroups.
func InPod(procs []Process, uid string) []Process {
	var in []Process
	for _, p := range procs {
		if p.InPodCgroup(uid) {
			in = append(in, p)
		}
	}
	return in
}

// Matching returns the processes whose comm or executable's base name matches re.
func Matching(procs []Process, re *regexp.Regexp) []Process {
	var m []Process
	for _, p := range procs {
		if re.MatchString(p.Comm) || (p.Exe != "" && re.MatchString(path.Base(p.Exe))) {
			m = append(m, p)
		}
	}
	return m
}

// Comms returns the set of process names in a listing.
func Comms(procs []Process) map[string]bool {
	set := map[string]bool{}
	for _, p := range procs {
		set[p.Comm] = true
	}
	return set
}

// Identity names one process for good: a PID alone may be reused.
type Identity struct {
	PID       int
	StartTime uint64
}

// Identities lists the identities of procs.
func Identities(procs []Process) []Identity {
	ids := make([]Identity, 0, len(procs))
	for _, p := range procs {
		ids = append(ids, Identity{p.PID, p.StartTime})
	}
	return ids
}

// StillAlive returns the processes of a later listing that are the same processes (same PID
// and start time) as any of the earlier identities.
func StillAlive(earlier []Identity, now []Process) []Process {
	seen := map[Identity]bool{}
	for _, id := range earlier {
		seen[id] = true
	}
	var alive []Process
	for _, p := range now {
		if seen[Identity{p.PID, p.StartTime}] {
			alive = append(alive, p)
		}
	}
	return alive
}
