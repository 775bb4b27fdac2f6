// Package kmsg writes the agent's reports of its own failures into the
// guest kernel's log (/dev/kmsg). They reach the console through printk,
// which writes the UART by polling, so they arrive even when the console
// tty (the agent's stderr) has stalled or is what the agent waits on. The
// drivers put printk.devkmsg=on on the kernel command line so that the
// kernel does not rate-limit a report to ten lines.
package kmsg

import (
	"os"
	"strings"
)

// Path is the kernel log device (a variable for tests).
var Path = "/dev/kmsg"

// MaxLine keeps a record under the kernel's 1 KiB line limit.
const MaxLine = 900

// Writer writes each line as a kernel log record at error level, which the
// console prints even when booted quiet; without /dev/kmsg (the agent run
// outside a guest) it writes to stderr.
type Writer struct{}

func (Writer) Write(p []byte) (int, error) {
	f, err := os.OpenFile(Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return os.Stderr.Write(p)
	}
	defer f.Close()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if len(line) > MaxLine {
			line = line[:MaxLine] + "..."
		}
		// One write is one record; a failed one (a full log) drops a line only.
		f.Write([]byte("<3>podvm-agent: " + line + "\n"))
	}
	return len(p), nil
}
