package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The agent port's virtqueues, as a hang report shows them. A lost request
// or answer on the virtio-serial channel is either in QEMU (a buffer popped
// and never pushed: inuse > 0) or in the guest (a used buffer the guest has
// not taken: used idx ahead of the used_event the guest last published), or
// never entered the ring at all (both rings at rest). QEMU's own indices come
// from `info virtio-queue-status`; the guest's from the rings in guest memory.
//
// The agent port is the first virtserialport: port 1, whose receive queue
// (host to guest) is 4 and transmit queue (guest to host) is 5. Queues 0-1
// belong to the reserved console port 0 and 2-3 to the control channel.
var agentPortQueues = []struct {
	index   int
	what    string
	toGuest bool
}{
	{4, "host to guest", true},
	{5, "guest to host", false},
}

// virtioDevice returns the QOM path of the virtio device called name.
func (c *qmpClient) virtioDevice(ctx context.Context, name string) (string, error) {
	var devs []struct {
		Name string `json:"name"`
		Path string `json:"path"`
	}
	if err := c.Execute(ctx, "x-query-virtio", nil, &devs); err != nil {
		return "", err
	}
	for _, d := range devs {
		if d.Name == name {
			return d.Path, nil
		}
	}
	return "", fmt.Errorf("x-query-virtio lists no %s device", name)
}

// sharedFSQueue describes the virtio-fs request queue (queue 1; 0 is the
// high-priority queue) from guest memory: virtiofsd, not QEMU, serves it,
// so QEMU's own indices are not kept. Requests the guest made that
// virtiofsd has not answered are avail.idx - used.idx; a guest process
// waiting on the share with requests outstanding points at virtiofsd.
func (c *qmpClient) sharedFSQueue(ctx context.Context) string {
	path, err := c.virtioDevice(ctx, "virtio-user-fs")
	if err != nil {
		return fmt.Sprintf("virtio-fs request queue: %v\n", err)
	}
	f, err := c.queueStatus(ctx, path, 1)
	if err != nil {
		return fmt.Sprintf("virtio-fs request queue: %v\n", err)
	}
	avail, err1 := strconv.ParseUint(f["avail"], 0, 64)
	used, err2 := strconv.ParseUint(f["used"], 0, 64)
	if err1 != nil || err2 != nil || avail == 0 {
		return "virtio-fs request queue: ring addresses unknown\n"
	}
	availIdx, err1 := c.guestWord(ctx, avail+2, 16)
	usedIdx, err2 := c.guestWord(ctx, used+2, 16)
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("virtio-fs request queue: %v\n", errors.Join(err1, err2))
	}
	return fmt.Sprintf("virtio-fs request queue: guest made %d requests, virtiofsd answered %d: %d outstanding\n",
		availIdx, usedIdx, uint16(availIdx-usedIdx))
}

func (c *qmpClient) hmp(ctx context.Context, cmdline string) (string, error) {
	var out string
	err := c.Execute(ctx, "human-monitor-command", map[string]string{"command-line": cmdline}, &out)
	return out, err
}

var (
	hmpField = regexp.MustCompile(`(?m)^\s*([a-z_]+):\s+(\S+)\s*$`)
	xpWord   = regexp.MustCompile(`:\s*(0x[0-9a-f]+)`)
)

// guestWord reads one little-endian word of guest physical memory, of
// 16 or 32 bits.
func (c *qmpClient) guestWord(ctx context.Context, addr uint64, bits int) (uint64, error) {
	unit := map[int]string{16: "h", 32: "w"}[bits]
	out, err := c.hmp(ctx, fmt.Sprintf("xp /1%sx 0x%x", unit, addr))
	if err != nil {
		return 0, err
	}
	m := xpWord.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("xp: unexpected output %q", out)
	}
	return strconv.ParseUint(m[1], 0, bits)
}

// queueStatus is `info virtio-queue-status` of one queue, field by field
// (used_idx, inuse, and the ring's num, desc, avail and used addresses).
func (c *qmpClient) queueStatus(ctx context.Context, path string, index int) (map[string]string, error) {
	out, err := c.hmp(ctx, fmt.Sprintf("info virtio-queue-status %s %d", path, index))
	if err != nil {
		return nil, err
	}
	f := map[string]string{}
	for _, m := range hmpField.FindAllStringSubmatch(out, -1) {
		f[m[1]] = m[2]
	}
	return f, nil
}

// agentQueues describes the agent port's two virtqueues, one line each.
func (c *qmpClient) agentQueues(ctx context.Context) string {
	path, err := c.virtioDevice(ctx, "virtio-serial")
	if err != nil {
		return fmt.Sprintf("agent port virtqueues: %v\n", err)
	}
	var b strings.Builder
	var isr struct {
		ISR int `json:"isr"`
	}
	if err := c.Execute(ctx, "x-query-virtio-status", map[string]string{"path": path}, &isr); err != nil {
		fmt.Fprintf(&b, "virtio-serial status: %v\n", err)
	} else {
		fmt.Fprintf(&b, "virtio-serial interrupt status (isr): %d\n", isr.ISR)
	}
	for _, q := range agentPortQueues {
		f, err := c.queueStatus(ctx, path, q.index)
		if err != nil {
			fmt.Fprintf(&b, "queue %d (%s): %v\n", q.index, q.what, err)
			continue
		}
		fmt.Fprintf(&b, "queue %d (%s): QEMU last_avail_idx %s used_idx %s inuse %s signalled_used %s",
			q.index, q.what, f["last_avail_idx"], f["used_idx"], f["inuse"], f["signalled_used"])
		b.WriteString(c.guestRing(ctx, f, q.toGuest))
		b.WriteString("\n")
	}
	return b.String()
}

// guestRing reads the ring indices from guest memory: the avail idx the
// guest published, the used idx QEMU published and the used_event (with
// EVENT_IDX, the used idx up to which the guest has taken buffers when it
// last re-armed its interrupt).
func (c *qmpClient) guestRing(ctx context.Context, f map[string]string, toGuest bool) string {
	avail, err1 := strconv.ParseUint(f["avail"], 0, 64)
	used, err2 := strconv.ParseUint(f["used"], 0, 64)
	num, err3 := strconv.ParseUint(f["num"], 0, 32)
	if err1 != nil || err2 != nil || err3 != nil || avail == 0 {
		return "; ring addresses unknown"
	}
	availIdx, err := c.guestWord(ctx, avail+2, 16)
	if err != nil {
		return fmt.Sprintf("; guest ring: %v", err)
	}
	usedIdx, err := c.guestWord(ctx, used+2, 16)
	if err != nil {
		return fmt.Sprintf("; guest ring: %v", err)
	}
	usedEvent, err := c.guestWord(ctx, avail+4+2*num, 16)
	if err != nil {
		return fmt.Sprintf("; guest ring: %v", err)
	}
	ring := fmt.Sprintf("; guest ring avail.idx %d used.idx %d used_event %d", availIdx, usedIdx, usedEvent)
	if !toGuest {
		// QEMU gives back the guest's buffers with a used length of 0,
		// and the guest reuses their descriptors at once: no sizes.
		return ring
	}
	// The byte counts QEMU put into the last used buffers, oldest first:
	// matched against the host's writes, they show a request that never
	// entered the ring.
	var lens []string
	for i := usedIdx - min(usedIdx, 8); i < usedIdx; i++ {
		n, err := c.guestWord(ctx, used+4+8*(i%num)+4, 32)
		if err != nil {
			break
		}
		lens = append(lens, strconv.FormatUint(n, 10))
	}
	return ring + "; last used lengths [" + strings.Join(lens, " ") + "]"
}

// threadStates lists the threads of host process pid with their state and
// the kernel function they wait in: a virtiofsd whose threads all sleep
// while the guest waits on it has lost a request.
func threadStates(pid int) string {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		stat, _ := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		wchan, _ := os.ReadFile(filepath.Join(dir, e.Name(), "wchan"))
		st := string(stat)
		if i := strings.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) {
			st = st[strings.IndexByte(st, '('):i+1] + " " + st[i+2:i+3]
		}
		fmt.Fprintf(&b, " %s:%s:%s", e.Name(), st, wchan)
	}
	return strings.TrimSpace(b.String())
}

// lapicTimer gives the local APIC timer's lines of `info lapic`. A guest
// whose timer is masked while it waits (LVTT "masked") has no timer
// interrupt: its sleeps and timeouts never end. That was the overload
// hang of docs/reliability.md, where the kernel had disabled a timer it
// failed to calibrate.
func (c *qmpClient) lapicTimer(ctx context.Context) string {
	out, err := c.hmp(ctx, "info lapic")
	if err != nil {
		return fmt.Sprintf("local APIC: %v\n", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		// LVTT only: LVTTHMR, the thermal sensor's entry, shares the prefix.
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "LVTT" || f[0] == "Timer") {
			b.WriteString("local APIC " + strings.Join(f, " ") + "\n")
		}
	}
	if b.Len() == 0 {
		return "local APIC: no timer lines in `info lapic`\n"
	}
	return b.String()
}
