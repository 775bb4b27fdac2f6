package hold

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// pageSize is the unit of the copy: pages of the RAM file that hold only
// zeros are not written, so they take no memory in the memfd either.
const pageSize = 4096

// load reads the RAM file into a new memfd and seals it (Seals). Only
// the file's data ranges are read (SEEK_DATA): a template's RAM file is
// sparse, the guest having touched a fraction of its RAM.
func load(path string) (*os.File, error) {
	ram, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer ram.Close()
	st, err := ram.Stat()
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate(MemfdName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:"+MemfdName)
	if err := fill(mem, ram, st.Size()); err != nil {
		mem.Close()
		return nil, fmt.Errorf("copy %s into a memfd: %w", path, err)
	}
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, Seals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal the memfd: %w", err)
	}
	return mem, nil
}

// fill sizes mem as ram and copies ram's non-zero pages into it.
func fill(mem, ram *os.File, size int64) error {
	if err := mem.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(ram.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("SEEK_DATA: %w", err)
		}
		hole, err := unix.Seek(int(ram.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("SEEK_HOLE: %w", err)
		}
		for p := data; p < hole; {
			n := int(min(int64(len(buf)), hole-p))
			if _, err := ram.ReadAt(buf[:n], p); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if err := writeNonZero(mem, buf[:n], p); err != nil {
				return err
			}
			p += int64(n)
		}
		off = hole
	}
	return nil
}

// writeNonZero writes b's non-zero pages to mem at off.
func writeNonZero(mem *os.File, b []byte, off int64) error {
	zero := make([]byte, pageSize)
	for i := 0; i < len(b); i += pageSize {
		page := b[i:min(i+pageSize, len(b))]
		if bytes.Equal(page, zero[:len(page)]) {
			continue
		}
		if _, err := mem.WriteAt(page, off+int64(i)); err != nil {
			return err
		}
	}
	return nil
}
