package procmem

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A VM template's RAM is its holder's sealed memfd (package hold), which
// the holder keeps open but never maps. PSS splits a page among the
// processes that map it, so the clones' PSS covers only the pages some
// clone maps: the rest of the holder's memory was counted by nobody
// (52 of 68 MiB at 25 clones, docs/benchmarks.md). A clone is therefore
// charged what it wrote (its copied-on-write pages) plus an equal share of
// the memfd's allocated pages among the processes that map it: over all
// the clones, the holder's memory is counted once.

// templateCharge is the guest RAM charge, in KiB, of pid's mappings of
// held templates, and the PSS of those mappings, which it replaces.
func templateCharge(pid int, maps []Mapping) (charge, pss uint64, err error) {
	seen := map[uint64]bool{}
	for _, m := range maps {
		if !strings.HasPrefix(m.Path, TemplateRAMPrefix) {
			continue
		}
		pss += m.PssKB
		charge += m.AnonKB
		if seen[m.Inode] {
			continue
		}
		seen[m.Inode] = true
		var st syscall.Stat_t
		name := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End)
		if err := syscall.Stat(name, &st); err != nil {
			return 0, 0, fmt.Errorf("stat %s: %w", name, err)
		}
		mappers := templateMappers(m.Inode)
		if mappers == 0 {
			return 0, 0, fmt.Errorf("no process maps the template memfd (inode %d) that process %d maps", m.Inode, pid)
		}
		charge += uint64(st.Blocks) * 512 / 1024 / uint64(mappers)
	}
	return charge, pss, nil
}

// templateMappers counts the processes that map the held template memfd
// whose inode is ino.
func templateMappers(ino uint64) int {
	files, _ := filepath.Glob("/proc/[0-9]*/maps")
	n := 0
	for _, p := range files {
		if mapsInode(p, ino) {
			n++
		}
	}
	return n
}

// mapsInode says whether the maps file at path maps the template memfd
// whose inode is ino.
func mapsInode(path string, ino uint64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false // the process is gone, or a kernel thread
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, TemplateRAMPrefix) {
			continue
		}
		if f := strings.Fields(line); len(f) >= 6 {
			if n, err := strconv.ParseUint(f[4], 10, 64); err == nil && n == ino {
				return true
			}
		}
	}
	return false
}
