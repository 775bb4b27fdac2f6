package guestimage

import (
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// initramfsLayoutVersion is part of the initramfs cache key: bump it whenever
// initramfsEntries or the cpio encoding changes.
const initramfsLayoutVersion = "podvm-initramfs-1"

// initramfsDirs are the directories the agent mounts on or writes to before it
// has mounted anything (the parents of other files are added for them). /sys/fs/cgroup is not listed: it appears inside sysfs.
// There is no /etc/passwd or /etc/group: runc resolves users and groups in the
// container's rootfs, never in the guest's.
var initramfsDirs = []struct {
	name string
	perm uint32
}{
	{"dev", 0o755},
	{"etc", 0o755},
	{"proc", 0o555},
	{"run", 0o755},
	{"sys", 0o555},
	{"tmp", 0o1777},
	{"usr", 0o755},
	{"usr/bin", 0o755},
}

// initramfsFile is a regular file copied from the host into the archive.
type initramfsFile struct {
	name string // path in the archive
	src  string // path on the host
	perm uint32
}

// initramfsFiles is the archive's file list for the given agent and runc,
// and any extra files (crun and its libraries).
func initramfsFiles(agent, runc string, extra ...initramfsFile) []initramfsFile {
	return append([]initramfsFile{
		{name: "init", src: agent, perm: 0o755},
		{name: "usr/bin/runc", src: runc, perm: 0o755},
	}, extra...)
}

// buildInitramfs writes the archive for agent, runc and the extra files into
// cacheDir, unless an archive with the same key is already there, and
// returns its path.
func buildInitramfs(cacheDir, agent, runc string, progress io.Writer, extra ...initramfsFile) (string, error) {
	files := initramfsFiles(agent, runc, extra...)
	key, err := initramfsKey(files)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "guestimage")
	out := filepath.Join(dir, "initramfs-"+key[:12]+".cpio")
	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
		now := time.Now()
		os.Chtimes(out, now, now) // recently used: kept by pruneInitramfs
		fmt.Fprintf(progress, "initramfs: cached %s\n", out)
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("initramfs: create cache dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".initramfs-*.tmp")
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := writeInitramfs(bw, files); err != nil {
		tmp.Close()
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("initramfs: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("initramfs: publish %s: %w", out, err)
	}
	st, _ := os.Stat(out)
	fmt.Fprintf(progress, "initramfs: wrote %s (%s)\n", out, humanSize(st.Size()))
	if removed := pruneInitramfs(dir, keepInitramfs); len(removed) > 0 {
		fmt.Fprintf(progress, "initramfs: removed %d older archives from the cache\n", len(removed))
	}
	return out, nil
}

// keepInitramfs is how many archives the cache keeps. Every agent build
// makes a new one (16 MB); without a bound a developer's cache grew to 65
// of them in two days.
const keepInitramfs = 8

// pruneInitramfs removes all but the keep most recently written or used
// archives in dir and returns what it removed. Installs copy the archive,
// so nothing running uses the cache's files.
func pruneInitramfs(dir string, keep int) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, "initramfs-*.cpio"))
	type entry struct {
		path string
		mod  time.Time
	}
	var entries []entry
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			entries = append(entries, entry{p, st.ModTime()})
		}
	}
	if len(entries) <= keep {
		return nil
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].mod.After(entries[j].mod) })
	var removed []string
	for _, e := range entries[keep:] {
		if os.Remove(e.path) == nil {
			removed = append(removed, e.path)
		}
	}
	return removed
}

// initramfsKey hashes the layout version and every input file's content.
// Paths and host timestamps are left out: only what ends up in the archive
// matters.
func initramfsKey(files []initramfsFile) (string, error) {
	h := sha256.New()
	writeField(h, "layout", []byte(initramfsLayoutVersion))
	for _, f := range files {
		fh, err := os.Open(f.src)
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		sum := sha256.New()
		_, err = io.Copy(sum, fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("initramfs: read %s: %w", f.src, err)
		}
		writeField(h, f.name, sum.Sum(nil))
		writeField(h, f.name+".perm", []byte(fmt.Sprintf("%o", f.perm)))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeInitramfs writes the whole archive: directories, /dev/console and the
// files, in sorted path order.
func writeInitramfs(w io.Writer, files []initramfsFile) error {
	type item struct {
		entry cpioEntry
		src   string
	}
	var items []item
	dirs := map[string]bool{}
	for _, d := range initramfsDirs {
		items = append(items, item{entry: cpioEntry{Name: d.name, Mode: modeDir | d.perm}})
		dirs[d.name] = true
	}
	// Directories only extra files need (the libraries' lib/...) are made
	// for them, 0755.
	for _, f := range files {
		for p := filepath.Dir(f.name); p != "." && !dirs[p]; p = filepath.Dir(p) {
			items = append(items, item{entry: cpioEntry{Name: p, Mode: modeDir | 0o755}})
			dirs[p] = true
		}
	}
	// The kernel opens /dev/console for PID 1's stdio before anything has
	// mounted devtmpfs; without this node /init starts with no stdio.
	items = append(items, item{entry: cpioEntry{Name: "dev/console", Mode: modeChar | 0o600, RdevMajor: 5, RdevMinor: 1}})
	for _, f := range files {
		st, err := os.Stat(f.src)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", f.src)
		}
		items = append(items, item{entry: cpioEntry{Name: f.name, Mode: modeFile | f.perm, Size: st.Size()}, src: f.src})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].entry.Name < items[j].entry.Name })
	// The kernel's unpacker does not create missing parents.
	seen := map[string]bool{}
	for _, it := range items {
		if p := filepath.Dir(it.entry.Name); p != "." && !seen[p] {
			return fmt.Errorf("layout: %s has no parent directory entry %s", it.entry.Name, p)
		}
		seen[it.entry.Name] = true
	}

	cw := newCpioWriter(w)
	for _, it := range items {
		if it.src == "" {
			if err := cw.WriteEntry(it.entry); err != nil {
				return err
			}
			continue
		}
		fh, err := os.Open(it.src)
		if err != nil {
			return err
		}
		it.entry.Body = fh
		err = cw.WriteEntry(it.entry)
		fh.Close()
		if err != nil {
			return err
		}
	}
	return cw.Close()
}

// checkStaticELF fails unless path is an x86-64 ELF executable without an
// interpreter: the guest has no dynamic loader and no libc, and a dynamic
// /init only shows up as "No working init found" at boot.
func checkStaticELF(path, what, fix string) error {
	f, err := elf.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s %s does not exist; %s", what, path, fix)
		}
		return fmt.Errorf("%s %s is not an ELF executable (%v); %s", what, path, err, fix)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s %s is built for %s, the guest is x86-64; %s", what, path, f.Machine, fix)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(p.Open())
			return fmt.Errorf("%s %s is dynamically linked (interpreter %s) but the guest has no libc; %s",
				what, path, strings.TrimRight(string(interp), "\x00"), fix)
		}
	}
	return nil
}
