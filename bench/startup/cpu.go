package startup

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/cpuuse"
	"github.com/podvm/podvm/bench/result"
)

// cpuWindows adds up the host's CPU time by component over windows in
// which a handler's pods start.
type cpuWindows struct {
	h       *benchhost.Host
	seconds cpuuse.Seconds
	window  time.Duration
	pods    int
	failed  bool // a snapshot failed: no figure rather than a wrong one
}

func newCPUWindows(h *benchhost.Host) *cpuWindows {
	return &cpuWindows{h: h, seconds: cpuuse.Seconds{}}
}

// begin takes the snapshot a window starts with (nil if it failed).
func (c *cpuWindows) begin() *cpuuse.Snapshot {
	s, err := c.h.CPUSnapshot()
	if err != nil {
		c.failed = true
	}
	return s
}

// end closes the window begin opened, in which pods pods started.
func (c *cpuWindows) end(before *cpuuse.Snapshot, pods int) {
	after, err := c.h.CPUSnapshot()
	if err != nil || before == nil {
		c.failed = true
		return
	}
	c.seconds.Add(c.h.CPUUse(before, after))
	c.window += after.At.Sub(before.At)
	c.pods += pods
}

func (c *cpuWindows) result() *result.CPUUse {
	if c.failed || c.pods == 0 {
		return nil
	}
	return benchhost.CPUResult(c.seconds, c.pods, result.Ms(c.window))
}

// printCPU prints where the host's CPU time went, per pod.
func printCPU(w io.Writer, c *result.CPUUse) {
	if c == nil {
		return
	}
	var parts []string
	for _, comp := range c.Components {
		if comp.Seconds > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", comp.Name, comp.PerPodSeconds))
		}
	}
	fmt.Fprintf(w, "      host CPU seconds per pod (%d pods, %.0f ms): %s\n", c.Pods, c.WindowMs, strings.Join(parts, ", "))
}
