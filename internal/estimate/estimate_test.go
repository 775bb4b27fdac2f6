package estimate

import (
	"strings"
	"testing"
	"time"
)

// lines receives each Write.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
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
	w := make(lines, 4)
	stop := Ticker(w, "kernel: compiling", KernelBuild)
	defer stop()
	select {
	case got := <-w:
		if !strings.HasPrefix(got, "kernel: compiling... 2s (about 4 min") {
			t.Errorf("first line %q", got)
		}
	case <-time.After(First + time.Second):
		t.Fatalf("no line after %s", First+time.Second)
	}
	stop()
	select {
	case got := <-w:
		t.Errorf("a line after stop: %q", got)
	default:
	}
}
