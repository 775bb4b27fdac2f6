package benchhost

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/accel"
	"github.com/podvm/podvm/version"
)

// Describe says what the figures were measured on.
func (h *Host) Describe() result.Host {
	out := result.Host{CPUs: runtime.NumCPU(), CPUModel: cpuModel()}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		out.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		out.MemoryMiB = float64(uint64(si.Totalram)*uint64(si.Unit)) / (1 << 20)
	}
	want, _ := hypervisor.ParseAccelerator(h.Config.Hypervisor.Accelerator)
	if acc, why, err := accel.Choose(want); err == nil {
		out.Accelerator, out.AcceleratorReason = string(acc), why
	} else {
		out.AcceleratorReason = err.Error()
	}
	hv := h.Config.Hypervisor
	out.VM = result.VM{VCPUs: int(hv.DefaultVCPUs), MemoryMiB: int(hv.DefaultMemoryMiB),
		TBSizeMiB: int(hv.QEMU.TCGTBSizeMiB), SharedFS: hv.SharedFS}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(hv.Kernel), "kernel.release")); err == nil {
		out.VM.Kernel = strings.TrimSpace(string(b))
	}
	out.Versions = result.Versions{
		Podvm:      version.Version,
		QEMU:       firstLine(h.Config.Hypervisor.QEMU.Path, "--version"),
		Containerd: firstLine(h.Tools.Containerd, "--version"),
		Runc:       firstLine(h.Tools.Runc, "--version"),
	}
	if h.Tools.Runsc != "" {
		out.Versions.Runsc = runscVersion(h.Tools.Runsc)
	}
	return out
}

// firstLine is the first line a command prints ("" on failure).
func firstLine(cmd string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, cmd, args...).Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// MemAvailableMiB is the host's MemAvailable.
func MemAvailableMiB() float64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// runscVersion names gVisor's build: a runsc built with the go command
// says "VERSION_MISSING", so the cached build is named by its module
// version instead.
func runscVersion(path string) string {
	v := firstLine(path, "--version")
	if strings.Contains(v, "VERSION_MISSING") || v == "" {
		if strings.Contains(path, "/gvisor-"+GVisorVersion+"/") {
			return "runsc (gvisor.dev/gvisor " + GVisorVersion + ")"
		}
	}
	return v
}
