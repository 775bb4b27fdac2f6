package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/podvm/podvm/runtime/hypervisor"
)

func TestReadTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int64
		want string
	}{{4, "6789"}, {10, "0123456789"}, {100, "0123456789"}, {0, ""}}
	for _, tt := range tests {
		got, err := readTail(path, tt.n)
		if err != nil || got != tt.want {
			t.Errorf("readTail(%d) = %q, %v; want %q", tt.n, got, err, tt.want)
		}
	}
	if _, err := readTail(filepath.Join(t.TempDir(), "missing"), 4); err == nil {
		t.Error("readTail of a missing file: no error")
	}
}

func TestReadConsoleTailReachesIntoTheRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("6789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readConsoleTail(path, 3); err != nil || got != "789" {
		t.Errorf("readConsoleTail(3) without a rotation = %q, %v", got, err)
	}
	if got, err := readConsoleTail(path, 8); err != nil || got != "6789" {
		t.Errorf("readConsoleTail(8) without a rotation = %q, %v", got, err)
	}
	if err := os.WriteFile(path+".1", []byte("012345"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int64
		want string
	}{{3, "789"}, {4, "6789"}, {7, "3456789"}, {100, "0123456789"}}
	for _, tt := range tests {
		if got, err := readConsoleTail(path, tt.n); err != nil || got != tt.want {
			t.Errorf("readConsoleTail(%d) = %q, %v; want %q", tt.n, got, err, tt.want)
		}
	}
	if _, err := readConsoleTail(filepath.Join(t.TempDir(), "missing"), 4); err == nil {
		t.Error("readConsoleTail of a missing console: no error")
	}
}

// A guest that hangs call after call gets one report per interval, and
// the next report counts the calls held back.
func TestHangLimiter(t *testing.T) {
	var h hangLimiter
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{30 * time.Second, false, 0},
		{hangReportInterval - time.Millisecond, false, 0},
		{hangReportInterval, true, 3},
		{hangReportInterval + time.Second, false, 0},
		{3 * hangReportInterval, true, 1},
		{5 * hangReportInterval, true, 0},
	}
	for _, s := range steps {
		ok, n := h.allow(t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("allow at +%v = %v, %d; want %v, %d", s.at, ok, n, s.ok, s.suppressed)
		}
	}
	if hangReportInterval < 10*time.Second {
		t.Errorf("hangReportInterval %v: a hostile guest could fill the shim's log", hangReportInterval)
	}
}

// consoleVM is a fakeVM whose Info names a console log.
type consoleVM struct {
	*fakeVM
	console string
}

func (v consoleVM) Info() hypervisor.Info {
	return hypervisor.Info{Driver: "fake", ConsolePath: v.console}
}

// A guest whose calls keep hanging gets one report into the shim's log per
// interval, with the console's tail, and the next report counts the rest.
func TestHangReportsAreRateLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("agent: slow call Exec\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{ID: "hung", vm: consoleVM{&fakeVM{done: make(chan struct{})}, path}}
	var out bytes.Buffer
	logger := log.L.Logger
	prevOut, prevLevel := logger.Out, logger.Level
	logger.SetOutput(&out)
	logger.SetLevel(logrus.InfoLevel)
	t.Cleanup(func() { logger.SetOutput(prevOut); logger.SetLevel(prevLevel) })

	for i := 0; i < 5; i++ {
		s.logConsoleTail("ExecProcess")
	}
	if n := strings.Count(out.String(), "the guest console ends with"); n != 1 {
		t.Fatalf("%d reports for 5 hung calls within an interval, want 1:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "slow call Exec") || !strings.Contains(out.String(), "hung_calls_not_reported=0") {
		t.Errorf("the report lacks the console or the count:\n%s", out.String())
	}
	out.Reset()
	s.hangs.mu.Lock()
	s.hangs.last = s.hangs.last.Add(-hangReportInterval)
	s.hangs.mu.Unlock()
	s.logConsoleTail("ExecProcess")
	if !strings.Contains(out.String(), "the guest console ends with") || !strings.Contains(out.String(), "hung_calls_not_reported=4") {
		t.Errorf("the report after the interval does not count the 4 held back:\n%s", out.String())
	}
}
