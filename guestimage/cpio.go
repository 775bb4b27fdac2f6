package guestimage

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// File type bits of a cpio mode (the same values as st_mode).
const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
	modeType = 0o170000
)

const (
	newcMagic   = "070701"
	newcHdrLen  = 110
	cpioTrailer = "TRAILER!!!"
)

// cpioEntry is one member of a newc archive. Mode carries the type bits
// (modeDir, modeFile, modeChar) and the permission bits.
type cpioEntry struct {
	Name      string // relative path without a leading "/", e.g. "usr/bin/runc"
	Mode      uint32
	Size      int64     // regular files only
	Body      io.Reader // regular files only; exactly Size bytes are read
	RdevMajor uint32    // character devices only
	RdevMinor uint32
}

// cpioWriter writes the "newc" (SVR4, no CRC) format the kernel unpacks into
// rootfs. Every field that would make two archives of the same entries
// differ is fixed: mtime and uid/gid are 0 and inode numbers count up from 1
// in write order, so callers that write entries in a fixed order get
// byte-identical archives.
type cpioWriter struct {
	w      io.Writer
	ino    uint32
	off    int64
	closed bool
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w} }

// WriteEntry appends e to the archive.
func (cw *cpioWriter) WriteEntry(e cpioEntry) error {
	if cw.closed {
		return errors.New("cpio: write after close")
	}
	if e.Name == "" || strings.HasPrefix(e.Name, "/") || e.Name == cpioTrailer {
		return fmt.Errorf("cpio: bad entry name %q (want a relative path)", e.Name)
	}
	nlink := uint32(1)
	size := int64(0)
	switch e.Mode & modeType {
	case modeDir:
		nlink = 2
	case modeFile:
		if e.Size < 0 || e.Size > 0xffffffff {
			return fmt.Errorf("cpio: %s: size %d does not fit newc's 32-bit field", e.Name, e.Size)
		}
		size = e.Size
	case modeChar:
	default:
		return fmt.Errorf("cpio: %s: unsupported file type in mode %#o", e.Name, e.Mode)
	}
	cw.ino++
	if err := cw.header(cw.ino, e.Mode, nlink, uint32(size), e.RdevMajor, e.RdevMinor, e.Name); err != nil {
		return err
	}
	if size > 0 {
		if e.Body == nil {
			return fmt.Errorf("cpio: %s: no body for %d bytes", e.Name, size)
		}
		n, err := io.Copy(cw.w, io.LimitReader(e.Body, size))
		cw.off += n
		if err != nil {
			return fmt.Errorf("cpio: %s: %w", e.Name, err)
		}
		if n != size {
			return fmt.Errorf("cpio: %s: body ended after %d of %d bytes", e.Name, n, size)
		}
	}
	return cw.pad()
}

// Close writes the trailer entry. It does not close the underlying writer.
func (cw *cpioWriter) Close() error {
	if cw.closed {
		return nil
	}
	if err := cw.header(0, 0, 1, 0, 0, 0, cpioTrailer); err != nil {
		return err
	}
	cw.closed = true
	return cw.pad()
}

func (cw *cpioWriter) header(ino, mode, nlink, size, rmaj, rmin uint32, name string) error {
	// Field order: ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check. namesize counts the NUL.
	h := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	n, err := io.WriteString(cw.w, h+name+"\x00")
	cw.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: %s: %w", name, err)
	}
	return cw.pad()
}

// pad aligns the stream to 4 bytes, as newc requires after names and bodies.
func (cw *cpioWriter) pad() error {
	if r := cw.off % 4; r != 0 {
		n, err := cw.w.Write(make([]byte, 4-r))
		cw.off += int64(n)
		if err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
	}
	return nil
}
