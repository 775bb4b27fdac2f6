package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a host process as a fault test finds it.
type Process struct {
	Pid     int
	Exe     string // base name of argv[0]
	Cmdline []string
}

// processes lists every process whose command line pred accepts.
func processes(pred func(Process) bool) []Process {
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

// PodvmShims lists the containerd-shim-podvm-v2 daemons this containerd
// started: their command line names its address.
func (c *Containerd) PodvmShims() []Process {
	return processes(func(p Process) bool {
		return p.Exe == "containerd-shim-podvm-v2" && strings.Contains(strings.Join(p.Cmdline, " "), c.Address)
	})
}

// Children lists the processes whose parent is pid.
func Children(pid int) []Process {
	return processes(func(p Process) bool { return ParentPid(p.Pid) == pid })
}

// VM is the host side of one pod VM being created or running.
type VM struct {
	Shim, QEMU, Virtiofsd int
	// ID is the sandbox id, from QEMU's -name podvm-<id>.
	ID string
}

// VMs lists the pod VMs of this containerd's podvm shims whose QEMU has
// been spawned.
func (c *Containerd) VMs() []VM {
	var out []VM
	for _, shim := range c.PodvmShims() {
		vm := VM{Shim: shim.Pid}
		for _, ch := range Children(shim.Pid) {
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
