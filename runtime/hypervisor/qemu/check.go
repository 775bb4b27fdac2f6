package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
)

// minQEMU is the oldest QEMU the command line is known to work with: microvm
// with memory-backend=, vhost-user-fs-device and -accel tcg,tb-size=.
var minQEMU = [2]int{6, 2}

// Check reports, without starting a VM, whether this host can run the driver.
// Features that have a working fallback (vsock, KVM) are reported not OK but
// Optional, with what is used instead.
func (d *Driver) Check(ctx context.Context) []hypervisor.CheckResult {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var res []hypervisor.CheckResult
	qemuPath, err := d.qemuBinary()
	if err != nil {
		res = append(res, hypervisor.CheckResult{Name: "qemu binary", Detail: err.Error(),
			Fix: "apt-get install qemu-system-x86, or set [hypervisor.qemu] path in the podvm config"})
	} else {
		res = append(res, checkQEMUVersion(ctx, qemuPath))
		res = append(res, checkQEMUHelp(ctx, qemuPath, "machine", []string{"-machine", "help"}, "microvm"))
		res = append(res, checkQEMUHelp(ctx, qemuPath, "memfd backend", []string{"-object", "help"}, "memory-backend-memfd"))
	}
	res = append(res, vmm.CheckMemfd())
	res = append(res, d.checkVirtiofsd())
	res = append(res, d.checkHybridVsock(ctx, qemuPath))
	res = append(res, checkVsock())
	res = append(res, d.checkAccel())
	return res
}

var qemuVersionRE = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)(\.\d+)?`)

func checkQEMUVersion(ctx context.Context, bin string) hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "qemu version", Fix: "apt-get install qemu-system-x86 (7.2 or newer)"}
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		r.Detail = fmt.Sprintf("%s --version: %v", bin, err)
		return r
	}
	m := qemuVersionRE.FindStringSubmatch(string(out))
	if m == nil {
		r.Detail = fmt.Sprintf("%s --version: unrecognized output %q", bin, firstLine(string(out)))
		return r
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	r.Detail = fmt.Sprintf("%s: %s", bin, firstLine(string(out)))
	if major < minQEMU[0] || (major == minQEMU[0] && minor < minQEMU[1]) {
		r.Detail += fmt.Sprintf(" (need %d.%d or newer)", minQEMU[0], minQEMU[1])
		return r
	}
	r.OK, r.Fix = true, ""
	return r
}

// checkQEMUHelp looks for want in the output of a `qemu ... help` listing.
func checkQEMUHelp(ctx context.Context, bin, name string, args []string, want string) hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "qemu " + name, Fix: "install a qemu-system-x86 build with " + want}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	switch {
	case err != nil:
		r.Detail = fmt.Sprintf("%s %s: %v", bin, strings.Join(args, " "), err)
	case !strings.Contains(string(out), want):
		r.Detail = want + " not offered by " + bin
	default:
		r.OK, r.Detail, r.Fix = true, want+" available", ""
	}
	return r
}

func (d *Driver) checkVirtiofsd() hypervisor.CheckResult {
	return vmm.CheckVirtiofsd(d.opts.VirtiofsdPath,
		"apt-get install qemu-system-common (C virtiofsd) or virtiofsd, or set [hypervisor.qemu] virtiofsd_path; 9p works without it (shared_fs = \"9p\")")
}

// checkHybridVsock finds vhost-device-vsock, reports its version and
// whether QEMU has the device that uses it.
func (d *Driver) checkHybridVsock(ctx context.Context, qemuPath string) hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "vhost-device-vsock", Optional: d.opts.VhostDeviceVsockPath == "",
		Fix: "install vhost-device-vsock (podvm install ships it in <prefix>/libexec/podvm) or set [hypervisor.qemu] vhost_device_vsock_path; without it the agent channel is virtio-serial"}
	bin, err := vmm.FindHybridVsock(d.opts.VhostDeviceVsockPath)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		r.Detail = fmt.Sprintf("%s --version: %v", bin, err)
		return r
	}
	r.Detail = fmt.Sprintf("%s: %s; the agent channel is hybrid vsock", bin, firstLine(string(out)))
	if qemuPath != "" {
		if dev := checkQEMUHelp(ctx, qemuPath, "device", []string{"-device", "help"}, "vhost-user-vsock-device"); !dev.OK {
			r.Detail, r.Optional = dev.Detail, false
			r.Fix = "install a QEMU with vhost-user-vsock-device (7.0 or newer), or set transport = \"serial\""
			return r
		}
	}
	r.OK, r.Optional, r.Fix = true, false, ""
	return r
}

func checkVsock() hypervisor.CheckResult {
	ok, why := vhostVsockUsable()
	r := hypervisor.CheckResult{Name: "vhost-vsock", OK: ok, Optional: true, Detail: why}
	if !ok {
		// Kernel vhost-vsock is the last choice (hybridvsock.go): its
		// absence costs nothing unless transport = "vsock" is configured
		// and vhost-device-vsock is missing.
		r.Detail += "; kernel vsock is used only with transport = \"vsock\" and no vhost-device-vsock"
		r.Fix = "none needed: the agent channel is hybrid vsock (vhost-device-vsock) or virtio-serial"
	}
	return r
}

func (d *Driver) checkAccel() hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "accelerator"}
	want, err := hypervisor.ParseAccelerator(string(d.opts.Accelerator))
	if err != nil {
		r.Detail, r.Fix = err.Error(), "set accelerator to auto, kvm or tcg"
		return r
	}
	acc, why, err := d.decideAccel(want)
	if err != nil {
		r.Detail, r.Fix = err.Error(), "set accelerator to auto or tcg, or run on a host with VT-x/AMD-V and kvm_intel/kvm_amd"
		return r
	}
	r.OK, r.Detail = true, fmt.Sprintf("accelerator %s: %s", acc, why)
	if acc == hypervisor.AccelTCG {
		if khz, src, err := HostTSCKHz(); err == nil {
			r.Detail += fmt.Sprintf("; guest TSC %d kHz from %s", khz, src)
		} else {
			r.Detail += "; host TSC rate unknown, the guest calibrates its own"
		}
		if want == hypervisor.AccelAuto {
			// Works, but emulated: report the fallback, not a failure.
			r.OK, r.Optional = false, true
			r.Fix = "for KVM (much faster): a host with VT-x/AMD-V and kvm_intel/kvm_amd loaded"
		}
	}
	return r
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
