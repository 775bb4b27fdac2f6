package server

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/kmsg"
)

// A call that should answer at once but does not is the hardest failure to
// debug from the host: the shim only sees silence. So when such a call has
// run for slowCallReport, the agent writes its own goroutines and the
// guest's processes (state and wait channel) to the console, where the
// host's console log keeps them. The delay is well inside the shim's bound
// (agentclient.CallTimeout, 1 min), so the report is there when the shim
// gives up and logs the console's tail.
// The report goes through the kernel log (package kmsg), not the
// agent's stderr: a console tty whose output has stalled blocks its
// writers, and may be the very thing that hangs the call.
var (
	slowCallReport           = 20 * time.Second
	slowCallOut    io.Writer = kmsg.Writer{}
	procRoot                 = "/proc"
)

// maxStackDump bounds the goroutine part of a report: every byte is an
// emulated UART write under TCG.
const maxStackDump = 64 << 10

// watchSlowCall arms the report for one call; stop disarms it.
func watchSlowCall(method string) (stop func()) {
	if api.Waits(method) {
		return func() {}
	}
	start := time.Now()
	t := time.AfterFunc(slowCallReport, func() { reportSlowCall(slowCallOut, method, time.Since(start)) })
	return func() { t.Stop() }
}

// reportMu keeps two reports from interleaving on the console.
var reportMu sync.Mutex

func reportSlowCall(w io.Writer, method string, running time.Duration) {
	reportMu.Lock()
	defer reportMu.Unlock()
	// The goroutines are written before the process list is gathered:
	// reading a process's command line waits for its memory map lock,
	// which a process stuck in the kernel (say, a page fault on a share
	// whose server stopped answering) may hold, and then the report would
	// never be written at all.
	var b bytes.Buffer
	fmt.Fprintf(&b, "podvm-agent: %s has run for %s without answering; agent goroutines and guest processes follow\n",
		method, running.Round(time.Second))
	stacks := make([]byte, maxStackDump)
	n := runtime.Stack(stacks, true)
	b.Write(stacks[:n])
	if n == len(stacks) {
		b.WriteString("\n... (goroutines cut at 64 KiB)\n")
	}
	w.Write(b.Bytes())
	b.Reset()
	b.WriteString("\nguest processes (pid state wchan command):\n")
	writeProcesses(&b, procRoot)
	fmt.Fprintf(&b, "podvm-agent: end of the report on %s\n", method)
	w.Write(b.Bytes())
}

// procReadWait bounds one read of a /proc file that can block (cmdline).
const procReadWait = 500 * time.Millisecond

// readProcFile reads a /proc file, giving up after procReadWait; a read
// that blocks is left behind (it ends when the process does).
func readProcFile(path string) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := os.ReadFile(path)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(procReadWait):
		return nil, fmt.Errorf("read %s: blocked for %s", path, procReadWait)
	}
}

// writeProcesses lists root's processes: a process stuck in the kernel
// shows state D and the function it waits in (for example a FUSE request
// virtiofsd never answered).
func writeProcesses(w io.Writer, root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		fmt.Fprintf(w, "  (%v)\n", err)
		return
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	for _, pid := range pids {
		dir := filepath.Join(root, strconv.Itoa(pid))
		comm, state := "?", "?"
		if stat, err := readProcFile(filepath.Join(dir, "stat")); err == nil {
			comm, state = parseStat(string(stat))
		}
		wchan := "-"
		if wc, err := readProcFile(filepath.Join(dir, "wchan")); err == nil && len(wc) > 0 && string(wc) != "0" {
			wchan = string(wc)
		}
		cmd := comm
		if cl, err := readProcFile(filepath.Join(dir, "cmdline")); err != nil {
			cmd = comm + " (command line unreadable: " + err.Error() + ")"
		} else if len(cl) > 0 {
			cmd = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
			if len(cmd) > 160 {
				cmd = cmd[:160] + "..."
			}
		}
		fmt.Fprintf(w, "  %d %s %s %s\n", pid, state, wchan, cmd)
	}
}

// parseStat returns the command name and state of a /proc/PID/stat line.
// The name is in parentheses and may itself hold spaces and parentheses,
// so the state is the field after the last ')'.
func parseStat(stat string) (comm, state string) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "?", "?"
	}
	comm = stat[open+1 : end]
	rest := strings.Fields(stat[end+1:])
	if len(rest) == 0 {
		return comm, "?"
	}
	return comm, rest[0]
}
