// Package accel decides whether a VM runs under KVM or TCG. /dev/kvm existing
// is not enough: on this project's build hosts it is kvm_pvm, a software
// hypervisor on which a stock guest kernel crawls and QEMU's -cpu host aborts.
// So the choice rests on a real probe of /dev/kvm plus evidence of hardware
// virtualization (vmx/svm CPU flag, kvm_intel/kvm_amd module). The choice
// itself, configured and decided, is a hypervisor.Accelerator.
package accel

import (
	"fmt"
	"strings"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// Facts are what the probe learned about the host. Tests inject them.
type Facts struct {
	// OpenErr is the error opening /dev/kvm, nil if it opened.
	OpenErr error
	// APIVersion is KVM_GET_API_VERSION's answer (12 on every sane kernel),
	// APIErr the ioctl's error.
	APIVersion int
	APIErr     error
	// CreateVMErr is the error of KVM_CREATE_VM, nil if a VM was created.
	CreateVMErr error
	// CPUFlags are the "flags" of /proc/cpuinfo.
	CPUFlags map[string]bool
	// Modules are the loaded kvm modules seen in /sys/module (kvm_intel,
	// kvm_amd, kvm_pvm; built-in ones appear there too).
	Modules map[string]bool
}

// kvmAPIVersion is the only stable KVM API version there has ever been.
const kvmAPIVersion = 12

// KVMUsable says whether the facts show hardware-backed KVM, and why not.
func KVMUsable(f Facts) (bool, string) {
	if f.OpenErr != nil {
		return false, fmt.Sprintf("cannot open /dev/kvm: %v", f.OpenErr)
	}
	if f.APIErr != nil {
		return false, fmt.Sprintf("/dev/kvm KVM_GET_API_VERSION: %v", f.APIErr)
	}
	if f.APIVersion != kvmAPIVersion {
		return false, fmt.Sprintf("/dev/kvm reports API version %d, want %d", f.APIVersion, kvmAPIVersion)
	}
	if f.CreateVMErr != nil {
		return false, fmt.Sprintf("/dev/kvm cannot create a VM: %v", f.CreateVMErr)
	}
	hwFlag := ""
	switch {
	case f.CPUFlags["vmx"]:
		hwFlag = "vmx"
	case f.CPUFlags["svm"]:
		hwFlag = "svm"
	}
	hwModule := ""
	switch {
	case f.Modules["kvm_intel"]:
		hwModule = "kvm_intel"
	case f.Modules["kvm_amd"]:
		hwModule = "kvm_amd"
	}
	// A vendor module next to kvm_pvm wins: PVM is a fallback for hosts
	// (nested guests) that have no usable VMX/SVM.
	switch {
	case hwModule == "" && f.Modules["kvm_pvm"]:
		noFlag := ""
		if hwFlag == "" {
			noFlag = ", no vmx/svm"
		}
		return false, "/dev/kvm is kvm_pvm (software)" + noFlag
	case hwFlag == "" && hwModule == "":
		return false, "/dev/kvm works but the CPU has no vmx/svm flag and neither kvm_intel nor kvm_amd is loaded"
	}
	why := []string{"/dev/kvm API 12, VM created"}
	if hwModule != "" {
		why = append(why, hwModule)
	}
	if hwFlag != "" {
		why = append(why, hwFlag)
	}
	return true, strings.Join(why, ", ")
}

// Decide applies the configured choice (auto, kvm, tcg; empty is auto) to
// the facts and returns kvm or tcg with the reason, in words fit for a log
// line ("/dev/kvm is kvm_pvm (software), no vmx/svm"). Forcing kvm on a
// host that cannot do it is an error that says why and what to set instead.
func Decide(want hypervisor.Accelerator, f Facts) (hypervisor.Accelerator, string, error) {
	switch want {
	case hypervisor.AccelTCG:
		return hypervisor.AccelTCG, "forced by configuration", nil
	case hypervisor.AccelKVM:
		ok, why := KVMUsable(f)
		if !ok {
			return "", "", fmt.Errorf("accelerator kvm is configured but this host cannot use it: %s; set accelerator to auto or tcg", why)
		}
		return hypervisor.AccelKVM, "forced by configuration; " + why, nil
	case hypervisor.AccelAuto, "":
		ok, why := KVMUsable(f)
		if ok {
			return hypervisor.AccelKVM, why, nil
		}
		return hypervisor.AccelTCG, why, nil
	}
	return "", "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", want)
}

// Choose probes this host (unless tcg is forced) and decides.
func Choose(want hypervisor.Accelerator) (hypervisor.Accelerator, string, error) {
	if want == hypervisor.AccelTCG {
		return Decide(want, Facts{})
	}
	return Decide(want, Probe())
}
