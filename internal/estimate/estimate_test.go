package estimate

import (
	"regexp"
	"strconv"
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

// The first line comes after First, well before Every, and says how long
// the step has run (2s, or a little more when a loaded machine runs the
// timer late).
func TestTickerFirstLineSoon(t *testing.T) {
	w := make(lines, 4)
	begin := time.Now()
	stop := Ticker(w, "kernel: compiling", KernelBuild)
	defer stop()
	select {
	case got := <-w:
		ran := time.Since(begin)
		m := regexp.MustCompile(`^kernel: compiling\.\.\. (\d+)s \(about 4 min`).FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("first line %q", got)
		}
		if n, _ := strconv.Atoi(m[1]); ran < First || n < 2 || time.Duration(n)*time.Second > ran.Round(time.Second) {
			t.Errorf("first line %q after %v, want it after %v saying so", got, ran.Round(time.Millisecond), First)
		}
	case <-time.After(Every / 2):
		t.Fatalf("no line after %s", Every/2)
	}
	stop()
	select {
	case got := <-w:
		t.Errorf("a line after stop: %q", got)
	default:
	}
}
