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
		time.Sleep(200 * time.Millisecond)
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
