package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/kmsg"
)

// The stall watch looks for one failure from the guest's side of the
// channel: a request the host has sent that the agent never finishes
// reading. It follows the ttrpc frames read from the port (a 10-byte
// header whose first 4 bytes are the payload length), and when a frame
// stays incomplete, or the port holds bytes nobody reads, for stallReport,
// it writes what it sees to the kernel log: the bytes of the frame still
// missing, when the last read returned, and whether the port polls
// readable. Missing bytes with a port that is not readable mean the bytes
// never reached the guest's driver; a readable port with no reader woken
// means a lost wake-up.
const (
	stallReport = 15 * time.Second
	stallCheck  = 5 * time.Second
)

const ttrpcHeaderLen = 10

// frameTracker counts the bytes of the ttrpc frame being read.
type frameTracker struct {
	hdr       [ttrpcHeaderLen]byte
	hdrN      int
	length    uint32 // payload length of the current frame
	remaining uint32 // payload bytes still to come
	frames    uint64 // frames read whole
}

func (t *frameTracker) feed(b []byte) {
	for len(b) > 0 {
		if t.remaining > 0 {
			n := min(uint32(len(b)), t.remaining)
			t.remaining -= n
			b = b[n:]
			if t.remaining == 0 {
				t.frames++
			}
			continue
		}
		n := copy(t.hdr[t.hdrN:], b)
		t.hdrN += n
		b = b[n:]
		if t.hdrN == ttrpcHeaderLen {
			t.hdrN = 0
			t.length = binary.BigEndian.Uint32(t.hdr[:4])
			t.remaining = t.length
			if t.remaining == 0 {
				t.frames++
			}
		}
	}
}

// midFrame says whether a frame has begun and not ended.
func (t *frameTracker) midFrame() bool { return t.hdrN > 0 || t.remaining > 0 }

// stallWatch is the watch of one conn.
type stallWatch struct {
	mu       sync.Mutex
	frames   frameTracker
	lastRead time.Time
	reported bool
	stop     chan struct{}
	once     sync.Once
	running  sync.WaitGroup

	report, check time.Duration // stallReport, stallCheck
	out           io.Writer
}

func newStallWatch() *stallWatch {
	return &stallWatch{lastRead: time.Now(), stop: make(chan struct{}),
		report: stallReport, check: stallCheck, out: kmsg.Writer{}}
}

// read records bytes the agent read.
func (w *stallWatch) read(b []byte) {
	w.mu.Lock()
	w.frames.feed(b)
	w.lastRead = time.Now()
	w.reported = false
	w.mu.Unlock()
}

// start checks the conn every stallCheck until close; readable polls the
// port.
func (w *stallWatch) start(path string, readable func() (bool, error)) {
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		w.run(path, readable)
	}()
}

func (w *stallWatch) run(path string, readable func() (bool, error)) {
	t := time.NewTicker(w.check)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		idle := time.Since(w.lastRead)
		mid, fr, reported := w.frames.midFrame(), w.frames, w.reported
		w.mu.Unlock()
		if reported || idle < w.report {
			continue
		}
		ready, perr := readable()
		if !mid && (perr != nil || !ready) {
			continue // between messages, nothing waiting: a quiet channel
		}
		var what string
		if mid {
			what = fmt.Sprintf("a frame from the host stopped arriving: %d of %d payload bytes missing (%d of %d header bytes read)",
				fr.remaining, fr.length, fr.hdrN, ttrpcHeaderLen)
			if fr.hdrN > 0 {
				what = fmt.Sprintf("a frame header from the host stopped arriving: %d of %d bytes read", fr.hdrN, ttrpcHeaderLen)
			}
		} else {
			what = "the port holds bytes from the host that nobody has read"
		}
		fmt.Fprintf(w.out, "agent channel %s: %s; last read %s ago, %d frames read whole; port readable: %v (poll error %v)\n",
			path, what, idle.Round(time.Second), fr.frames, ready, perr)
		w.mu.Lock()
		w.reported = true
		w.mu.Unlock()
	}
}

// close stops the checks and waits for them to end.
func (w *stallWatch) close() {
	w.once.Do(func() { close(w.stop) })
	w.running.Wait()
}

// pollReadable reports whether f has bytes to read now.
func pollReadable(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var ready bool
	var perr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		_, perr = unix.Poll(fds, 0)
		ready = fds[0].Revents&unix.POLLIN != 0
	}); err != nil {
		return false, err
	}
	return ready, perr
}
