// Package procmem measures what host processes cost in memory: the
// proportional set size (PSS) of each process from /proc/<pid>/smaps, split
// by what the memory is (a pod VM's guest RAM, QEMU's TCG translation
// cache, the guest kernel and initramfs images QEMU keeps mapped, the
// rest), and how much of a memfd (guest RAM) is actually allocated.
//
// PSS charges a page shared by k processes 1/k to each, so the PSS of every
// process on the host adds up to the memory in use, and the PSS of one pod's
// processes is that pod's share of it, shared libraries included.
package procmem

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/podvm/podvm/runtime/factory/hold"
)

// Mapping is one region of a process's address space, as smaps lists it.
type Mapping struct {
	Start, End uint64 // addresses
	Perms      string // "rw-s", "rwxp", ...
	Inode      uint64 // of the file mapped, 0 for anonymous memory
	Path       string // file, "[heap]", "" for anonymous memory
	SizeKB     uint64
	RssKB      uint64
	PssKB      uint64
	// AnonKB is what the process has of its own in the mapping: for a
	// private file mapping, the pages it wrote (copied on write).
	AnonKB uint64
}

// Anonymous tells whether the mapping has no file behind it.
func (m Mapping) Anonymous() bool { return m.Path == "" }

// ParseSmaps reads /proc/<pid>/smaps text.
func ParseSmaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if isHeader(line) {
			f := strings.Fields(line)
			m := Mapping{Perms: f[1]}
			lo, hi, _ := strings.Cut(f[0], "-")
			m.Start, _ = strconv.ParseUint(lo, 16, 64)
			m.End, _ = strconv.ParseUint(hi, 16, 64)
			m.Inode, _ = strconv.ParseUint(f[4], 10, 64)
			if len(f) >= 6 {
				// The path may hold spaces ("... (deleted)"): it is all
				// that follows the inode.
				m.Path = strings.Join(f[5:], " ")
			}
			out = append(out, m)
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok || len(out) == 0 {
			continue
		}
		var dst *uint64
		switch key {
		case "Size":
			dst = &out[len(out)-1].SizeKB
		case "Rss":
			dst = &out[len(out)-1].RssKB
		case "Pss":
			dst = &out[len(out)-1].PssKB
		case "Anonymous":
			dst = &out[len(out)-1].AnonKB
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("smaps: unexpected %s line %q", key, line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("smaps: %s line %q: %w", key, line, err)
		}
		*dst = n
	}
	return out, sc.Err()
}

// isHeader tells a mapping's first line ("start-end perms offset dev inode
// [path]") from its "Key: value" lines.
func isHeader(line string) bool {
	f := strings.Fields(line)
	if len(f) < 5 || len(f[1]) != 4 {
		return false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(lo, 16, 64)
	_, err2 := strconv.ParseUint(hi, 16, 64)
	return err1 == nil && err2 == nil
}

// Breakdown is a process's PSS split by what the memory is, in KiB.
// PssKB is the total; the other Pss fields are parts of it, and Other is
// what is left.
type Breakdown struct {
	RssKB uint64
	PssKB uint64
	// GuestRAMKB: shared memfd mappings (QEMU's memory-backend-memfd, and
	// the same memory mapped by virtiofsd to serve the guest's requests),
	// and mappings of files under the guest RAM directories (a VM template
	// clone's RAM file, mapped private: its untouched pages are shared).
	// For a clone of a held template, Read charges its share of the
	// holder's memfd instead of the mapping's PSS (templateCharge), and
	// PssKB with it.
	GuestRAMKB uint64
	// JITKB: anonymous writable and executable memory, which in QEMU is
	// the TCG translation cache (its size is -accel tcg,tb-size).
	JITKB uint64
	// ImagesKB: the files named as images (the guest kernel and initramfs
	// QEMU loaded and keeps mapped).
	ImagesKB uint64
}

// OtherKB is the PSS that is none of guest RAM, JIT and images.
func (b Breakdown) OtherKB() uint64 { return b.PssKB - b.GuestRAMKB - b.JITKB - b.ImagesKB }

// Add sums two breakdowns.
func (b Breakdown) Add(o Breakdown) Breakdown {
	return Breakdown{RssKB: b.RssKB + o.RssKB, PssKB: b.PssKB + o.PssKB, GuestRAMKB: b.GuestRAMKB + o.GuestRAMKB,
		JITKB: b.JITKB + o.JITKB, ImagesKB: b.ImagesKB + o.ImagesKB}
}

// GuestRAMPrefix starts the path of a memfd mapping in smaps.
const GuestRAMPrefix = "/memfd:"

// TemplateRAMPrefix starts the path of a VM template's RAM as a clone maps
// it: the template holder's sealed memfd, mapped private (package hold).
// The clone's guest RAM is the pages it wrote, its own, and a share of the
// memfd (templateCharge).
const TemplateRAMPrefix = GuestRAMPrefix + hold.MemfdName

// Classify adds up mappings; images are absolute paths of files whose
// mappings count as ImagesKB, guestRAMDirs directories whose files'
// mappings count as GuestRAMKB.
func Classify(maps []Mapping, images []string, guestRAMDirs ...string) Breakdown {
	isImage := map[string]bool{}
	for _, p := range images {
		isImage[p] = true
	}
	var b Breakdown
	for _, m := range maps {
		b.RssKB += m.RssKB
		b.PssKB += m.PssKB
		switch {
		case strings.HasPrefix(m.Path, GuestRAMPrefix) && strings.HasSuffix(m.Perms, "s"):
			b.GuestRAMKB += m.PssKB
		case strings.HasPrefix(m.Path, TemplateRAMPrefix):
			b.GuestRAMKB += m.PssKB
		case underAny(m.Path, guestRAMDirs):
			b.GuestRAMKB += m.PssKB
		case m.Anonymous() && strings.HasPrefix(m.Perms, "rwx"):
			b.JITKB += m.PssKB
		case isImage[m.Path]:
			b.ImagesKB += m.PssKB
		}
	}
	return b
}

// underAny says whether path is below one of dirs.
func underAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if d != "" && strings.HasPrefix(path, filepath.Clean(d)+"/") {
			return true
		}
	}
	return false
}

// Read measures process pid (root is needed for another user's process);
// images and guestRAMDirs are Classify's.
func Read(pid int, images []string, guestRAMDirs ...string) (Breakdown, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return Breakdown{}, err
	}
	defer f.Close()
	maps, err := ParseSmaps(f)
	if err != nil {
		return Breakdown{}, fmt.Errorf("process %d: %w", pid, err)
	}
	b := Classify(maps, images, guestRAMDirs...)
	charge, pss, err := templateCharge(pid, maps)
	if err != nil {
		return Breakdown{}, fmt.Errorf("process %d: VM template RAM: %w", pid, err)
	}
	b.GuestRAMKB = b.GuestRAMKB - pss + charge
	b.PssKB = b.PssKB - pss + charge
	return b, nil
}

// MemfdAllocatedKB is how much of process pid's largest open memfd (but
// a VM template's) is
// backed by memory: for QEMU's memory-backend-memfd, the guest RAM the
// guest has touched (pages it never touched take no memory). ok is false
// when the process has no memfd open.
func MemfdAllocatedKB(pid int) (kb uint64, ok bool, err error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false, err
	}
	var best int64
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		target, err := os.Readlink(p)
		// A clone's template memfd is the holder's memory, not the
		// clone's: what the clone wrote is in its mapping's PSS.
		if err != nil || !strings.HasPrefix(target, GuestRAMPrefix) || strings.HasPrefix(target, TemplateRAMPrefix) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			continue
		}
		if st.Size > best {
			best = st.Size
			kb, ok = uint64(st.Blocks)*512/1024, true
		}
	}
	return kb, ok, nil
}

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
