package oom

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify follows modifications of the watched memory.events files. One
// instance serves every container: the agent needs a single reader.
type inotify struct {
	f       *os.File // non-blocking, so reads go through the poller and Close ends them
	onEvent func(id string, wd int)

	mu  sync.Mutex
	ids map[int]string // watch descriptor → container
}

func newInotify(onEvent func(id string, wd int)) (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	i := &inotify{f: os.NewFile(uintptr(fd), "inotify"), onEvent: onEvent, ids: make(map[int]string)}
	go i.read()
	return i, nil
}

// control runs fn on the descriptor without taking it out of the poller,
// which os.File.Fd would do.
func (i *inotify) control(fn func(fd int)) error {
	rc, err := i.f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

func (i *inotify) add(file, id string) (int, error) {
	wd := -1
	var err error
	if cerr := i.control(func(fd int) {
		wd, err = unix.InotifyAddWatch(fd, file, unix.IN_MODIFY)
	}); cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, fmt.Errorf("inotify watch of %s: %w", file, err)
	}
	i.mu.Lock()
	i.ids[wd] = id
	i.mu.Unlock()
	return wd, nil
}

// remove drops a watch. The watch may already be gone with its cgroup,
// which is no error.
func (i *inotify) remove(wd int) {
	i.mu.Lock()
	delete(i.ids, wd)
	i.mu.Unlock()
	_ = i.control(func(fd int) { _, _ = unix.InotifyRmWatch(fd, uint32(wd)) })
}

func (i *inotify) close() error { return i.f.Close() }

// read hands each modification to onEvent until the file is closed.
func (i *inotify) read() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := i.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				// Only a closed file ends the loop in practice;
				// anything else would repeat, so stop quietly.
				_ = i.f.Close()
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			wd := int(ev.Wd)
			i.mu.Lock()
			id, ok := i.ids[wd]
			if ev.Mask&unix.IN_IGNORED != 0 {
				delete(i.ids, wd) // the file (its cgroup) is gone
				ok = false
			}
			i.mu.Unlock()
			if ok && ev.Mask&unix.IN_MODIFY != 0 {
				i.onEvent(id, wd)
			}
		}
	}
}
