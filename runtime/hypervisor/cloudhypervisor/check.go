package cloudhypervisor

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/accel"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
)

// testedVersion is the Cloud Hypervisor release whose API schema the
// driver's requests are validated against (testdata/).
var testedVersion = [2]int{53, 0}

// Check reports, without starting a VM, whether this host can run the
// driver. Unlike qemu, hardware KVM is required: there is no fallback.
func (d *Driver) Check(ctx context.Context) []hypervisor.CheckResult {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var res []hypervisor.CheckResult
	bin, err := d.binary()
	if err != nil {
		detail, _, _ := strings.Cut(err.Error(), "; ") // the rest is the fix
		res = append(res, hypervisor.CheckResult{Name: "cloud-hypervisor binary", Detail: detail,
			Fix: "install a Cloud Hypervisor release binary (not packaged in Debian bookworm), or set [hypervisor.cloud_hypervisor] path in the podvm config"})
	} else {
		res = append(res, checkVersion(ctx, bin))
	}
	res = append(res, d.checkKVM())
	res = append(res, vmm.CheckMemfd())
	res = append(res, d.checkVirtiofsd())
	res = append(res, hypervisor.CheckResult{Name: "agent channel", OK: true,
		Detail: "hybrid vsock through a unix socket of the VMM: no /dev/vhost-vsock needed"})
	return res
}

var versionRE = regexp.MustCompile(`cloud-hypervisor v?(\d+)\.(\d+)`)

// checkVersion runs `cloud-hypervisor --version`. A release older than the
// one the driver is tested against is reported, not refused: the fields
// the driver uses are old, but only v53.0's schema is checked here.
func checkVersion(ctx context.Context, bin string) hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "cloud-hypervisor version",
		Fix: fmt.Sprintf("install Cloud Hypervisor v%d.%d or newer", testedVersion[0], testedVersion[1])}
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		r.Detail = fmt.Sprintf("%s --version: %v", bin, err)
		return r
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	m := versionRE.FindStringSubmatch(first)
	if m == nil {
		r.Detail = fmt.Sprintf("%s --version: unrecognized output %q", bin, first)
		return r
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	r.Detail = fmt.Sprintf("%s: %s", bin, first)
	if major < testedVersion[0] || (major == testedVersion[0] && minor < testedVersion[1]) {
		r.Detail += fmt.Sprintf(" (the driver is tested against the v%d.%d API)", testedVersion[0], testedVersion[1])
		r.Optional = true
		return r
	}
	r.OK, r.Fix = true, ""
	return r
}

// checkKVM: Cloud Hypervisor runs guests under KVM only.
func (d *Driver) checkKVM() hypervisor.CheckResult {
	r := hypervisor.CheckResult{Name: "hardware KVM"}
	ok, why := accel.KVMUsable(d.hostFacts())
	r.OK, r.Detail = ok, why
	if !ok {
		r.Detail += "; Cloud Hypervisor has no software emulation"
		r.Fix = `run on a host with VT-x/AMD-V and kvm_intel/kvm_amd loaded, or use hypervisor.driver = "qemu" (TCG)`
	}
	return r
}

func (d *Driver) checkVirtiofsd() hypervisor.CheckResult {
	return vmm.CheckVirtiofsd(d.opts.VirtiofsdPath,
		"apt-get install qemu-system-common (C virtiofsd) or virtiofsd, or set [hypervisor.cloud_hypervisor] virtiofsd_path; Cloud Hypervisor has no 9p fallback")
}
