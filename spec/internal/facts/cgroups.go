package facts

import (
	"sort"
	"strings"
)

// MemoryCgroupScript returns a script that prints, for each cgroup directory named after the
// pod's UID under root, "v1 <dir>" when it has cgroup v1 memory files and "v2 <dir>" when it has
// cgroup v2 ones.
func MemoryCgroupScript(root, uid string) string {
	var names []string
	for _, n := range PodCgroupNames(uid) {
		names = append(names, "-name '*"+n+"*'")
	}
	return `find ` + root + ` -maxdepth 6 -type d \( ` + strings.Join(names, " -o ") + ` \) 2>/dev/null | while read -r d; do
  [ -f "$d/memory.usage_in_bytes" ] && echo "v1 $d"
  [ -f "$d/memory.current" ] && echo "v2 $d"
done; true`
}

// MemoryCgroup is a pod's memory cgroup on the host and the files that hold its usage.
type MemoryCgroup struct {
	Dir   string
	Usage string // current usage in bytes
	Peak  string // highest usage seen, "" when the kernel does not keep one
}

// PickMemoryCgroup chooses the pod-level memory cgroup from the output of MemoryCgroupScript:
// the shortest matching path (the pod's own directory, not a child inside it).
func PickMemoryCgroup(out string) (MemoryCgroup, bool) {
	type cand struct{ version, dir string }
	var cands []cand
	for _, line := range strings.Split(out, "\n") {
		v, d, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && (v == "v1" || v == "v2") && d != "" {
			cands = append(cands, cand{v, d})
		}
	}
	if len(cands) == 0 {
		return MemoryCgroup{}, false
	}
	sort.SliceStable(cands, func(i, j int) bool { return len(cands[i].dir) < len(cands[j].dir) })
	c := cands[0]
	if c.version == "v1" {
		return MemoryCgroup{Dir: c.dir, Usage: c.dir + "/memory.usage_in_bytes", Peak: c.dir + "/memory.max_usage_in_bytes"}, true
	}
	// memory.peak exists from Linux 5.19; the script that reads it tolerates its absence.
	return MemoryCgroup{Dir: c.dir, Usage: c.dir + "/memory.current", Peak: c.dir + "/memory.peak"}, true
}
