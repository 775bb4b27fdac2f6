package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/kmsg"
)

// The stall watch looks for failures from the guest's side of the
// channel: a request the host has sent that the agent never finishes
// reading, a request read whole that never reaches a handler, an answer a
// handler returned that is never written, and a write to the port that
// never returns. It follows the ttrpc frames read from the port (a 10-byte
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

// ttrpc message types (byte 8 of the header).
const (
	ttrpcRequest  = 1
	ttrpcResponse = 2
)

// Dispatched, if set, returns how many calls the agent's handlers have
// begun and finished (all sessions). The watch compares them with the
// requests read and the answers written on its conn.
var Dispatched func() (started, finished uint64)

// frameTracker counts the bytes of the ttrpc frame being read.
type frameTracker struct {
	hdr       [ttrpcHeaderLen]byte
	hdrN      int
	length    uint32 // payload length of the current frame
	remaining uint32 // payload bytes still to come
	frames    uint64 // frames read whole
	kind      byte   // message type of the current frame
	byKind    [4]uint64
}

func (t *frameTracker) feed(b []byte) {
	for len(b) > 0 {
		if t.remaining > 0 {
			n := min(uint32(len(b)), t.remaining)
			t.remaining -= n
			b = b[n:]
			if t.remaining == 0 {
				t.done()
			}
			continue
		}
		n := copy(t.hdr[t.hdrN:], b)
		t.hdrN += n
		b = b[n:]
		if t.hdrN == ttrpcHeaderLen {
			t.hdrN = 0
			t.length = binary.BigEndian.Uint32(t.hdr[:4])
			t.kind = t.hdr[8]
			t.remaining = t.length
			if t.remaining == 0 {
				t.done()
			}
		}
	}
}

func (t *frameTracker) done() {
	t.frames++
	if int(t.kind) < len(t.byKind) {
		t.byKind[t.kind]++
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

	written      frameTracker // the agent's side of the stream
	writingSince time.Time    // zero while no write is in progress
	dispatch     func() (started, finished uint64)
	base         [2]uint64 // dispatch counts when the conn began
	// flow is the last check's counts (requests read, calls begun and
	// finished, answers written) and flowSince when they last changed.
	flow      [4]uint64
	flowSince time.Time
	flowShown bool
	stop      chan struct{}
	once      sync.Once
	running   sync.WaitGroup

	report, check time.Duration // stallReport, stallCheck
	out           io.Writer
}

func newStallWatch() *stallWatch {
	w := &stallWatch{lastRead: time.Now(), stop: make(chan struct{}),
		report: stallReport, check: stallCheck, out: kmsg.Writer{},
		dispatch: Dispatched, flowSince: time.Now()}
	if w.dispatch != nil {
		w.base[0], w.base[1] = w.dispatch()
	}
	return w
}

// writing records a write to the port beginning (start) or ending.
func (w *stallWatch) writing(b []byte, start bool) {
	w.mu.Lock()
	if start {
		w.writingSince = time.Now()
	} else {
		w.written.feed(b)
		w.writingSince = time.Time{}
	}
	w.mu.Unlock()
}

// checkFlow reports a request read whole that no handler took, an answer
// a handler returned that was never written, or a write that has not
// returned, once that state has lasted w.report with nothing moving. Each
// of these leaves the host waiting on a call the agent has no record of
// running, so the report carries the agent's goroutines.
func (w *stallWatch) checkFlow(path string) {
	w.mu.Lock()
	reqs, answers, writingSince := w.frames.byKind[ttrpcRequest], w.written.byKind[ttrpcResponse], w.writingSince
	w.mu.Unlock()
	var started, finished uint64
	if w.dispatch != nil {
		started, finished = w.dispatch()
		started, finished = started-w.base[0], finished-w.base[1]
	}
	flow := [4]uint64{reqs, started, finished, answers}
	if flow != w.flow {
		w.flow, w.flowSince, w.flowShown = flow, time.Now(), false
	}
	var what []string
	if w.dispatch != nil && reqs > started {
		what = append(what, fmt.Sprintf("%d request(s) read whole that no handler has begun", reqs-started))
	}
	if w.dispatch != nil && finished > answers {
		what = append(what, fmt.Sprintf("%d answer(s) returned by handlers and not written", finished-answers))
	}
	if !writingSince.IsZero() && time.Since(writingSince) >= w.report {
		what = append(what, fmt.Sprintf("a write to the port has not returned for %s", time.Since(writingSince).Round(time.Second)))
	}
	if len(what) == 0 || w.flowShown || time.Since(w.flowSince) < w.report {
		return
	}
	w.flowShown = true
	stacks := make([]byte, 64<<10)
	stacks = stacks[:runtime.Stack(stacks, true)]
	fmt.Fprintf(w.out, "agent channel %s: %s (requests read %d, calls begun %d, finished %d, answers written %d, for %s); agent goroutines follow\n%s\nagent channel %s: end of the report\n",
		path, strings.Join(what, "; "), reqs, started, finished, answers, time.Since(w.flowSince).Round(time.Second), stacks, path)
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
		w.checkFlow(path)
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
