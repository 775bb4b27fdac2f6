package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct{ stat, comm, state string }{
		{"1 (podvm-agent) S 0 1 1 0 -1", "podvm-agent", "S"},
		{"42 (runc:[2:INIT]) D 1 42 42 0", "runc:[2:INIT]", "D"},
		{"7 (a) b (c)) R 1 7", "a) b (c)", "R"},
		{"garbage", "?", "?"},
		{"9 (x)", "x", "?"},
	}
	for _, tt := range tests {
		comm, state := parseStat(tt.stat)
		if comm != tt.comm || state != tt.state {
			t.Errorf("parseStat(%q) = %q, %q; want %q, %q", tt.stat, comm, state, tt.comm, tt.state)
		}
	}
}

// fakeProc writes a /proc with the given pid -> {stat, wchan, cmdline}.
func fakeProc(t *testing.T, procs map[string][3]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, f := range procs {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"stat", "wchan", "cmdline"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(f[i]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.MkdirAll(filepath.Join(root, "sys"), 0o755) // not a process
	return root
}

func TestReportSlowCall(t *testing.T) {
	root := fakeProc(t, map[string][3]string{
		"1":  {"1 (podvm-agent) S 0 1 1", "0", "/init\x00"},
		"57": {"57 (runc) D 1 57 57", "fuse_simple_request", "runc\x00--root\x00/run/runc\x00create\x00pause\x00"},
	})
	old := procRoot
	procRoot = root
	defer func() { procRoot = old }()

	var out bytes.Buffer
	reportSlowCall(&out, "/podvm.agent.v1.AgentService/CreateContainer", 21*time.Second)
	got := out.String()
	for _, want := range []string{
		"/podvm.agent.v1.AgentService/CreateContainer has run for 21s without answering",
		"goroutine ", "TestReportSlowCall", // this goroutine's own stack
		"  1 S - /init\n",
		"  57 D fuse_simple_request runc --root /run/runc create pause\n",
		"end of the report",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the timer goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWatchSlowCall(t *testing.T) {
	oldDelay, oldOut := slowCallReport, slowCallOut
	defer func() { slowCallReport, slowCallOut = oldDelay, oldOut }()
	// The answered-in-time case gets a report delay a loaded machine's
	// preemption between the watch and its stop does not reach, and is
	// checked after that delay has passed, so a stop that failed to
	// disarm the report still shows.
	tests := []struct {
		method   string
		delay    time.Duration
		run      time.Duration
		reported bool
	}{
		{"/podvm.agent.v1.AgentService/CreateContainer", 20 * time.Millisecond, 300 * time.Millisecond, true},
		{"/podvm.agent.v1.AgentService/CreateContainer", 300 * time.Millisecond, 0, false},                 // answered in time
		{"/podvm.agent.v1.AgentService/WaitProcess", 20 * time.Millisecond, 300 * time.Millisecond, false}, // waits by design
	}
	for _, tt := range tests {
		var out lockedBuffer
		slowCallOut = &out
		slowCallReport = tt.delay
		stop := watchSlowCall(tt.method)
		time.Sleep(tt.run)
		stop()
		time.Sleep(tt.delay + 50*time.Millisecond) // a report armed too late, or not disarmed, would show now
		if got := strings.Contains(out.String(), "without answering"); got != tt.reported {
			t.Errorf("%s running %s: reported = %v, want %v", tt.method, tt.run, got, tt.reported)
		}
	}
}
