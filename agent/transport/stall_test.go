package transport

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"
)

func frame(payload int) []byte {
	b := make([]byte, ttrpcHeaderLen+payload)
	binary.BigEndian.PutUint32(b, uint32(payload))
	return b
}

func TestFrameTracker(t *testing.T) {
	two := append(frame(5), frame(0)...)
	tests := []struct {
		name   string
		chunks [][]byte
		mid    bool
		frames uint64
	}{
		{"one whole frame", [][]byte{frame(100)}, false, 1},
		{"header split", [][]byte{frame(3)[:4], frame(3)[4:]}, false, 1},
		{"two frames in one read, one empty", [][]byte{two}, false, 2},
		{"payload missing", [][]byte{frame(100)[:60]}, true, 0},
		{"header missing", [][]byte{frame(100)[:4]}, true, 0},
	}
	for _, tt := range tests {
		var f frameTracker
		for _, c := range tt.chunks {
			f.feed(c)
		}
		if f.midFrame() != tt.mid || f.frames != tt.frames {
			t.Errorf("%s: mid %v frames %d, want %v %d", tt.name, f.midFrame(), f.frames, tt.mid, tt.frames)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStallWatch(t *testing.T) {
	tests := []struct {
		name     string
		read     []byte
		readable bool
		want     string // "" = no report
	}{
		{"quiet between messages", frame(8), false, ""},
		{"frame stopped arriving", frame(8000)[:4106], false, "3904 of 8000 payload bytes missing"},
		{"unread bytes on the port", frame(8), true, "the port holds bytes from the host that nobody has read"},
	}
	for _, tt := range tests {
		var out syncBuffer
		w := newStallWatch()
		w.report, w.check, w.out = 50*time.Millisecond, 10*time.Millisecond, &out
		w.read(tt.read)
		w.start("port", func() (bool, error) { return tt.readable, nil })
		// A report due at 50 ms may come later on a loaded machine: wait
		// for it up to 5 s; with none expected, 200 ms of quiet (four
		// report periods) stands for none.
		time.Sleep(200 * time.Millisecond)
		for end := time.Now().Add(5 * time.Second); tt.want != "" && out.String() == "" && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(60 * time.Millisecond) // a second report, which must not come, would show by now
		w.close()
		got := out.String()
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("%s: report %q, want %q", tt.name, got, tt.want)
		}
		if strings.Count(got, "agent channel") > 1 {
			t.Errorf("%s: reported more than once: %q", tt.name, got)
		}
	}
}

func typed(payload int, kind byte) []byte {
	b := frame(payload)
	b[8] = kind
	return b
}

func TestStallWatchFlow(t *testing.T) {
	tests := []struct {
		name              string
		read, written     [][]byte
		started, finished uint64
		writing           bool
		want              string // "" = no report
	}{
		{"all answered", [][]byte{typed(5, ttrpcRequest)}, [][]byte{typed(3, ttrpcResponse)}, 1, 1, false, ""},
		{"long poll in a handler", [][]byte{typed(5, ttrpcRequest)}, nil, 1, 0, false, ""},
		{"request never dispatched", [][]byte{typed(5, ttrpcRequest), typed(7, ttrpcRequest)}, nil, 1, 0, false, "1 request(s) read whole that no handler has begun"},
		{"answer never written", [][]byte{typed(5, ttrpcRequest)}, nil, 1, 1, false, "1 answer(s) returned by handlers and not written"},
		{"write blocked", [][]byte{typed(5, ttrpcRequest)}, nil, 1, 0, true, "a write to the port has not returned"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		w := &stallWatch{out: &out, report: 0, check: time.Hour, stop: make(chan struct{}),
			dispatch: func() (uint64, uint64) { return 10 + tt.started, 20 + tt.finished }, base: [2]uint64{10, 20}}
		for _, b := range tt.read {
			w.read(b)
		}
		for _, b := range tt.written {
			w.writing(nil, true)
			w.writing(b, false)
		}
		if tt.writing {
			w.writing(nil, true)
		}
		w.checkFlow("/dev/port")
		w.checkFlow("/dev/port") // reported once only
		got := out.String()
		switch {
		case tt.want == "" && got != "":
			t.Errorf("%s: unexpected report %q", tt.name, got)
		case tt.want != "" && !strings.Contains(got, tt.want):
			t.Errorf("%s: report %q lacks %q", tt.name, got, tt.want)
		case tt.want != "" && strings.Count(got, "end of the report") != 1:
			t.Errorf("%s: want one report, got %q", tt.name, got)
		case tt.want != "" && !strings.Contains(got, "goroutine "):
			t.Errorf("%s: report lacks the goroutines", tt.name)
		}
	}
}
