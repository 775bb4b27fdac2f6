// Package shimlog reads what containerd-shim-podvm-v2 logs about a pod VM's
// start and teardown from containerd's log (which carries its shims'
// lines): the "pod VM ready" line with each start phase's timestamp,
// "container started in the pod VM", each exec's "exec ended in the pod
// VM", and the teardown's "container deleted from the pod VM", "pod VM
// destroyed" and "shim shut down". The lines are logrus text (logfmt: key=value, values
// quoted when they need it).
package shimlog

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Log messages of the shim (runtime/shim/task).
const (
	msgVMReady          = "pod VM ready"
	msgContainerStarted = "container started in the pod VM"
	msgExecEnded        = "exec ended in the pod VM" // at debug level
	// The teardown's lines: host_<mark>_ns fields each.
	msgContainerDeleted = "container deleted from the pod VM"
	msgVMDestroyed      = "pod VM destroyed"
	msgShutDown         = "shim shut down"
)

// VMStart is one pod VM's start as the shim logged it. Host fields are
// host clock times; Guest fields are the guest's CLOCK_BOOTTIME (its
// kernel's start is 0), and GuestClock is that clock's reading in the
// agent answer that arrived at AgentReady.
type VMStart struct {
	Sandbox      string
	Accelerator  string
	Transport    string
	GuestKernel  string
	ShimStarted  time.Time
	SandboxBegin time.Time
	VMMSpawned   time.Time
	VMMRunning   time.Time
	AgentReady   time.Time
	SandboxReady time.Time

	GuestAgentStarted time.Duration
	GuestAgentReady   time.Duration
	GuestClock        time.Duration
}

// KernelEntry places the guest kernel's start on the host's timeline: the
// agent's answer said GuestClock and arrived at AgentReady. It is late by
// the answer's transit time, which the host cannot see.
func (v VMStart) KernelEntry() time.Time { return v.AgentReady.Add(-v.GuestClock) }

// Guest places a guest CLOCK_BOOTTIME reading on the host's timeline.
func (v VMStart) Guest(d time.Duration) time.Time { return v.KernelEntry().Add(d) }

// Log is what one read of containerd's log found.
type Log struct {
	// VMs by sandbox id.
	VMs map[string]VMStart
	// ContainerStarted is when each container's start returned in the
	// shim, by container id.
	ContainerStarted map[string]time.Time
	// ContainerGuestMarks are the agent's marks of each container's create
	// and start (contract.Mark*: guest CLOCK_BOOTTIME), by container id;
	// absent for an agent older than the marks.
	ContainerGuestMarks map[string]map[string]time.Duration
	// Execs are the execs whose end the shims logged (only at debug
	// level), in the log's order.
	Execs []ExecEnded
	// Teardowns are the host marks of each container's Delete, of its
	// VM's destroy and of its shim's Shutdown (the host_<mark>_ns fields
	// of those lines, by container id; a VM's by its sandbox id, which is
	// its owner's container id).
	Teardowns map[string]map[string]time.Time
}

// ExecEnded is one exec's life as the shim logged it once its output
// drained: the host's steps (Unix nanoseconds, "exec_begin",
// "exec_answered", "relay_started", "wait_answered", "drained") and the
// guest's (contract.ProcessMarks: CLOCK_BOOTTIME).
type ExecEnded struct {
	Container, Exec string
	Host            map[string]time.Time
	Guest           map[string]time.Duration
}

// Read parses containerd's log; lines that are not the shim's start lines
// are skipped, and so are start lines this version cannot read (an older
// shim's "pod VM ready" has no phases).
func Read(r io.Reader) (*Log, error) {
	out := &Log{VMs: map[string]VMStart{}, ContainerStarted: map[string]time.Time{}, ContainerGuestMarks: map[string]map[string]time.Duration{}, Teardowns: map[string]map[string]time.Time{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, `msg="`+msgVMReady+`"`):
			kv := ParseLogfmt(line)
			if kv["msg"] != msgVMReady {
				continue
			}
			if v, err := vmStart(kv); err == nil {
				out.VMs[v.Sandbox] = v
			}
		case strings.Contains(line, `msg="`+msgContainerStarted+`"`):
			kv := ParseLogfmt(line)
			if ns, err := strconv.ParseInt(kv["host_started_ns"], 10, 64); err == nil && kv["container"] != "" {
				out.ContainerStarted[kv["container"]] = time.Unix(0, ns)
				out.ContainerGuestMarks[kv["container"]] = guestMarks(kv)
			}
		case strings.Contains(line, `msg="`+msgExecEnded+`"`):
			kv := ParseLogfmt(line)
			if kv["msg"] == msgExecEnded && kv["exec"] != "" {
				out.Execs = append(out.Execs, ExecEnded{Container: kv["container"], Exec: kv["exec"], Host: hostMarks(kv), Guest: guestMarks(kv)})
			}
		case strings.Contains(line, `msg="`+msgContainerDeleted+`"`), strings.Contains(line, `msg="`+msgVMDestroyed+`"`),
			strings.Contains(line, `msg="`+msgShutDown+`"`):
			out.addTeardown(ParseLogfmt(line))
		}
	}
	return out, sc.Err()
}

// addTeardown adds the host marks of a teardown line to its container's.
func (l *Log) addTeardown(kv map[string]string) {
	id := kv["container"]
	if kv["msg"] == msgVMDestroyed {
		id = kv["sandbox"]
	}
	if id == "" {
		return
	}
	if l.Teardowns[id] == nil {
		l.Teardowns[id] = map[string]time.Time{}
	}
	for name, t := range hostMarks(kv) {
		l.Teardowns[id][name] = t
	}
}

// guestMarks reads the guest_<mark>_ns fields of a line.
func guestMarks(kv map[string]string) map[string]time.Duration {
	marks := map[string]time.Duration{}
	for name, ns := range nsFields(kv, "guest_") {
		marks[name] = time.Duration(ns)
	}
	return marks
}

// hostMarks reads the host_<mark>_ns fields of a line.
func hostMarks(kv map[string]string) map[string]time.Time {
	marks := map[string]time.Time{}
	for name, ns := range nsFields(kv, "host_") {
		marks[name] = time.Unix(0, ns)
	}
	return marks
}

// nsFields reads the <prefix><name>_ns fields of a line, by name.
func nsFields(kv map[string]string, prefix string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range kv {
		rest, ok := strings.CutPrefix(k, prefix)
		name, isNs := strings.CutSuffix(rest, "_ns")
		if !ok || !isNs {
			continue
		}
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[name] = ns
		}
	}
	return out
}

func vmStart(kv map[string]string) (VMStart, error) {
	v := VMStart{Sandbox: kv["sandbox"], Accelerator: kv["accelerator"], Transport: kv["transport"], GuestKernel: kv["guest_kernel"]}
	if v.Sandbox == "" {
		return v, fmt.Errorf("no sandbox")
	}
	var err error
	num := func(key string) int64 {
		n, e := strconv.ParseInt(kv[key], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("%s=%q: %w", key, kv[key], e)
		}
		return n
	}
	v.ShimStarted = time.Unix(0, num("host_shim_started_ns"))
	v.SandboxBegin = time.Unix(0, num("host_sandbox_begin_ns"))
	v.VMMSpawned = time.Unix(0, num("host_vmm_spawned_ns"))
	v.VMMRunning = time.Unix(0, num("host_vmm_running_ns"))
	v.AgentReady = time.Unix(0, num("host_agent_ready_ns"))
	v.SandboxReady = time.Unix(0, num("host_sandbox_ready_ns"))
	v.GuestAgentStarted = time.Duration(num("guest_agent_started_ns"))
	v.GuestAgentReady = time.Duration(num("guest_agent_ready_ns"))
	v.GuestClock = time.Duration(num("guest_clock_ns"))
	return v, err
}

// ParseLogfmt splits a logrus text line into its keys and values; quoted
// values are unquoted.
func ParseLogfmt(line string) map[string]string {
	out := map[string]string{}
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		key := line[i : i+eq]
		i += eq + 1
		if strings.ContainsRune(key, ' ') {
			// Not a key: a bare word. Resume after its first space.
			i -= eq + 1
			sp := strings.IndexByte(line[i:], ' ')
			if sp < 0 {
				break
			}
			i += sp
			continue
		}
		if i < len(line) && line[i] == '"' {
			end := closingQuote(line, i)
			val, err := strconv.Unquote(line[i:end])
			if err != nil {
				val = line[i+1 : max(i+1, end-1)]
			}
			out[key] = val
			i = end
			continue
		}
		end := strings.IndexByte(line[i:], ' ')
		if end < 0 {
			end = len(line) - i
		}
		out[key] = line[i : i+end]
		i += end
	}
	return out
}

// closingQuote is the index just past the quote that closes the one at
// start, honouring backslash escapes; len(line) if it is never closed.
func closingQuote(line string, start int) int {
	for j := start + 1; j < len(line); j++ {
		switch line[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(line)
}
