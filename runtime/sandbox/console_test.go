package sandbox

import (
	"os"
	"path/filepath"
	"testing"
	"time"
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
