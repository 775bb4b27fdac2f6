package guestimage

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// guestLibDir is where the archive puts shared libraries: the first
// directory of the system search path of Debian's dynamic loader
// (`ld.so --help`), so that no ld.so.cache is needed in the guest.
const guestLibDir = "lib/x86_64-linux-gnu"

// hostLibDirs are where sharedLibraries looks a library up on the host, in
// the loader's order.
var hostLibDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// dynamicBinaryFiles returns binary as name in the archive, with its
// dynamic loader and every shared library it needs (DT_NEEDED, followed
// through the libraries), looked up in libDirs: exactly what the binary
// loads, and nothing else of the host's. substitutes maps a soname to the
// file that stands in for it (its own needs are followed instead).
func dynamicBinaryFiles(binary, name string, libDirs []string, substitutes map[string]string) ([]initramfsFile, error) {
	files := []initramfsFile{{name: name, src: binary, perm: 0o755}}
	interp, needed, err := elfDeps(binary)
	if err != nil {
		return nil, err
	}
	if interp == "" {
		return files, nil // static: nothing to add
	}
	files = append(files, initramfsFile{name: strings.TrimPrefix(interp, "/"), src: interp, perm: 0o755})
	seen := map[string]bool{}
	for len(needed) > 0 {
		lib := needed[0]
		needed = needed[1:]
		if seen[lib] {
			continue
		}
		seen[lib] = true
		src, ok := substitutes[lib]
		if !ok {
			var err error
			if src, err = findLib(lib, libDirs); err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", binary, lib, err)
			}
		}
		if filepath.Base(src) == filepath.Base(interp) {
			continue // the loader, listed by libc
		}
		files = append(files, initramfsFile{name: guestLibDir + "/" + lib, src: src, perm: 0o644})
		_, more, err := elfDeps(src)
		if err != nil {
			return nil, err
		}
		needed = append(needed, more...)
	}
	return files, nil
}

// elfDeps returns an x86-64 ELF file's interpreter ("" if static) and the
// sonames it needs.
func elfDeps(path string) (interp string, needed []string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return "", nil, fmt.Errorf("%s is built for %s, the guest is x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "", nil, fmt.Errorf("read the interpreter of %s: %w", path, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("libraries of %s: %w", path, err)
	}
	return interp, needed, nil
}

// findLib returns the first regular file (after symlinks) called soname in
// dirs.
func findLib(soname string, dirs []string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, soname)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}
