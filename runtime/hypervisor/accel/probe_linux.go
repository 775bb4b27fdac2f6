package accel

import (
	"bufio"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ioctl numbers from <linux/kvm.h>: _IO(KVMIO=0xAE, nr).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
)

// Paths read by Probe; variables so tests can point them elsewhere.
var (
	devKVM     = "/dev/kvm"
	cpuinfo    = "/proc/cpuinfo"
	sysModules = "/sys/module"
)

// Probe gathers Facts: it opens /dev/kvm, asks the API version and creates
// (and closes) a VM, then reads CPU flags and which kvm modules are loaded.
// It takes a few milliseconds; callers may cache the result per process.
func Probe() Facts {
	f := Facts{APIVersion: -1, CPUFlags: cpuFlags(cpuinfo), Modules: map[string]bool{}}
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm"} {
		if _, err := os.Stat(sysModules + "/" + m); err == nil {
			f.Modules[m] = true
		}
	}
	fd, err := unix.Open(devKVM, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		f.OpenErr = err
		return f
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		f.APIErr = err
		return f
	}
	f.APIVersion = v
	vm, err := unix.IoctlRetInt(fd, kvmCreateVM)
	if err != nil {
		f.CreateVMErr = err
		return f
	}
	unix.Close(vm)
	return f
}

// cpuFlags returns the flags of the first processor in a cpuinfo file.
func cpuFlags(path string) map[string]bool {
	flags := map[string]bool{}
	file, err := os.Open(path)
	if err != nil {
		return flags
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "flags" {
			for _, fl := range strings.Fields(val) {
				flags[fl] = true
			}
			break
		}
	}
	return flags
}
