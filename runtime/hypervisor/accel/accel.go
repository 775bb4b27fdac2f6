// Package accel decides whether a VM runs under KVM or TCG. /dev/kvm existing
// is not enough: on this project's build hosts it is kvm_pvm, a software
// hypervisor on which a stock guest kernel crawls and QEMU's -cpu host aborts.
// So the choice rests on a real probe of /dev/kvm plus evidence of hardware
// virtualization (vmx/svm CPU flag, kvm_intel/kvm_amd module).
package accel

import (
	"fmt"
	"strings"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// Mode is the configured choice: auto, kvm or tcg.
type Mode string

const (
	ModeAuto Mode = "auto"
	ModeKVM  Mode = "kvm"
	ModeTCG  Mode = "tcg"
)

// ParseMode accepts "", auto, kvm, tcg (empty means auto).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeKVM, ModeTCG:
		return m, nil
	}
	return "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", s)
}

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

// Decision is the chosen accelerator and why, in words fit for a log line:
// "accelerator tcg: /dev/kvm is kvm_pvm (software), no vmx/svm".
type Decision struct {
	Accel  hypervisor.Accelerator
	Reason string
}

func (d Decision) String() string { return fmt.Sprintf("accelerator %s: %s", d.Accel, d.Reason) }

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

// Decide applies the configured mode to the facts. Forcing kvm on a host
// that cannot do it is an error that says why and what to set instead.
func Decide(m Mode, f Facts) (Decision, error) {
	switch m {
	case ModeTCG:
		return Decision{hypervisor.AccelTCG, "forced by configuration"}, nil
	case ModeKVM:
		ok, why := KVMUsable(f)
		if !ok {
			return Decision{}, fmt.Errorf("accelerator kvm is configured but this host cannot use it: %s; set accelerator to auto or tcg", why)
		}
		return Decision{hypervisor.AccelKVM, "forced by configuration; " + why}, nil
	case ModeAuto, "":
		ok, why := KVMUsable(f)
		if ok {
			return Decision{hypervisor.AccelKVM, why}, nil
		}
		return Decision{hypervisor.AccelTCG, why}, nil
	}
	return Decision{}, fmt.Errorf("accelerator mode %q: want auto, kvm or tcg", m)
}

// Choose probes this host (unless tcg is forced) and decides.
func Choose(m Mode) (Decision, error) {
	if m == ModeTCG {
		return Decide(m, Facts{})
	}
	return Decide(m, Probe())
}
