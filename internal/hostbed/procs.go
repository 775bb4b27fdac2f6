package hostbed

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a host process as a test or a leak check finds it.
type Process struct {
	Pid     int
	Exe     string // base name of argv[0]
	Cmdline []string
}

// Processes lists every process whose command line pred accepts.
func Processes(pred func(Process) bool) []Process {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []Process
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		proc := Process{Pid: pid, Exe: filepath.Base(args[0]), Cmdline: args}
		if pred(proc) {
			out = append(out, proc)
		}
	}
	return out
}

// PodvmShims lists the containerd-shim-podvm-v2 daemons the containerd
// serving on address started: their command line names it.
func PodvmShims(address string) []Process {
	return Processes(func(p Process) bool {
		return p.Exe == "containerd-shim-podvm-v2" && strings.Contains(strings.Join(p.Cmdline, " "), address)
	})
}

// children lists the processes whose parent is pid.
func children(pid int) []Process {
	return Processes(func(p Process) bool { return ParentPid(p.Pid) == pid })
}

// VM is the host side of one pod VM being created or running.
type VM struct {
	Shim, QEMU, Virtiofsd int
	// ID is the sandbox id, from QEMU's -name podvm-<id>.
	ID string
}

// PodVMs lists the pod VMs of the podvm shims of the containerd serving on
// address whose QEMU has been spawned.
func PodVMs(address string) []VM {
	var out []VM
	for _, shim := range PodvmShims(address) {
		vm := VM{Shim: shim.Pid}
		for _, ch := range children(shim.Pid) {
			switch {
			case strings.HasPrefix(ch.Exe, "qemu-system"):
				vm.QEMU = ch.Pid
				for i, a := range ch.Cmdline {
					if a == "-name" && i+1 < len(ch.Cmdline) {
						vm.ID = strings.TrimPrefix(strings.SplitN(ch.Cmdline[i+1], ",", 2)[0], "podvm-")
					}
				}
			case ch.Exe == "virtiofsd":
				vm.Virtiofsd = ch.Pid
			}
		}
		if vm.QEMU != 0 {
			out = append(out, vm)
		}
	}
	return out
}

// ProcCgroups parses /proc/<pid>/cgroup into hierarchy (its controller
// list, "" for the unified one) -> path.
func ProcCgroups(pid int) (map[string]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out, nil
}

// VMProcesses finds the host processes of the pod VM whose state directory
// names id: QEMU and virtiofsd, by executable name.
func VMProcesses(id string) (qemu, virtiofsd []int) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 || !strings.Contains(string(b), id) {
			continue
		}
		exe := filepath.Base(strings.SplitN(string(b), "\x00", 2)[0])
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		switch {
		case strings.HasPrefix(exe, "qemu-system"):
			qemu = append(qemu, pid)
		case exe == "virtiofsd":
			virtiofsd = append(virtiofsd, pid)
		}
	}
	return qemu, virtiofsd
}

// Threads counts the threads of process pid (0 if it is gone).
func Threads(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return len(ents)
}

// ParentPid is the parent of process pid (0 if it is gone).
func ParentPid(pid int) int {
	f, err := ProcStat(pid)
	if err != nil {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// ProcStat is the fields of /proc/PID/stat after the command name (which
// may hold spaces and ends at the last ')'), starting with the state:
// field n of proc(5) is ProcStat(pid)[n-3].
func ProcStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f, nil
}
