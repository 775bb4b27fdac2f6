package estimate

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

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

func TestAbout(t *testing.T) {
	if got := KernelBuild.About(); got != "about 4 min on 2 cores, fresh tree" {
		t.Errorf("KernelBuild.About() = %q", got)
	}
	if got := (Step{Typical: 90 * time.Second, Where: "x"}).About(); got != "about 1.5 min on x" {
		t.Errorf("90 s = %q", got)
	}
}

// The first line comes within First, well before Every.
func TestTickerFirstLineSoon(t *testing.T) {
	var w syncBuffer
	stop := Ticker(&w, "kernel: compiling", KernelBuild)
	deadline := time.Now().Add(First + time.Second)
	for w.String() == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	stop()
	if got := w.String(); !strings.HasPrefix(got, "kernel: compiling... 2s (about 4 min") || strings.Count(got, "\n") != 1 {
		t.Errorf("after %s: %q, want one line", First+time.Second, got)
	}
}
