package accel

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/podvm/podvm/runtime/hypervisor"
)

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func TestDecide(t *testing.T) {
	working := func(flags, mods map[string]bool) Facts {
		return Facts{APIVersion: 12, CPUFlags: flags, Modules: mods}
	}
	tests := []struct {
		name    string
		mode    Mode
		facts   Facts
		want    hypervisor.Accelerator
		why     string // substring of the reason or error
		wantErr bool
	}{
		{"intel host", ModeAuto, working(set("vmx", "lm"), set("kvm_intel")), hypervisor.AccelKVM, "kvm_intel, vmx", false},
		{"amd host", ModeAuto, working(set("svm"), set("kvm_amd")), hypervisor.AccelKVM, "kvm_amd, svm", false},
		{"pvm host (this project's)", ModeAuto, working(set("hypervisor", "lm"), set("kvm_pvm")), hypervisor.AccelTCG,
			"/dev/kvm is kvm_pvm (software), no vmx/svm", false},
		{"pvm next to vmx", ModeAuto, working(set("vmx"), set("kvm_pvm")), hypervisor.AccelTCG, "kvm_pvm (software)", false},
		{"vendor module beats pvm", ModeAuto, working(set("vmx"), set("kvm_pvm", "kvm_intel")), hypervisor.AccelKVM, "kvm_intel", false},
		{"no flag, no module", ModeAuto, working(set("lm"), set()), hypervisor.AccelTCG, "no vmx/svm flag", false},
		{"flag only (module not visible)", ModeAuto, working(set("svm"), set()), hypervisor.AccelKVM, "svm", false},
		{"no /dev/kvm", ModeAuto, Facts{OpenErr: syscall.ENOENT}, hypervisor.AccelTCG, "cannot open /dev/kvm: no such file", false},
		{"no permission", ModeAuto, Facts{OpenErr: syscall.EACCES}, hypervisor.AccelTCG, "permission denied", false},
		{"create VM fails", ModeAuto, Facts{APIVersion: 12, CreateVMErr: syscall.EBUSY, CPUFlags: set("vmx"), Modules: set("kvm_intel")},
			hypervisor.AccelTCG, "cannot create a VM", false},
		{"forced tcg", ModeTCG, working(set("vmx"), set("kvm_intel")), hypervisor.AccelTCG, "forced by configuration", false},
		{"forced kvm ok", ModeKVM, working(set("vmx"), set("kvm_intel")), hypervisor.AccelKVM, "forced by configuration; /dev/kvm API 12", false},
		{"forced kvm on pvm", ModeKVM, working(set(), set("kvm_pvm")), "", "accelerator kvm is configured but this host cannot use it: /dev/kvm is kvm_pvm", true},
		{"forced kvm without /dev/kvm", ModeKVM, Facts{OpenErr: syscall.ENOENT}, "", "set accelerator to auto or tcg", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decide(tt.mode, tt.facts)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.why) {
					t.Fatalf("err = %v, want one containing %q", err, tt.why)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Accel != tt.want || !strings.Contains(d.Reason, tt.why) {
				t.Errorf("Decide = %v, want %s with reason containing %q", d, tt.want, tt.why)
			}
		})
	}
}

func TestAPIVersionMismatch(t *testing.T) {
	ok, why := KVMUsable(Facts{APIVersion: 11, CPUFlags: set("vmx"), Modules: set("kvm_intel")})
	if ok || !strings.Contains(why, "API version 11") {
		t.Errorf("KVMUsable = %v, %q", ok, why)
	}
	ok, why = KVMUsable(Facts{APIErr: errors.New("boom")})
	if ok || !strings.Contains(why, "boom") {
		t.Errorf("KVMUsable = %v, %q", ok, why)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "KVM": ModeKVM, " tcg ": ModeTCG} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("hvf"); err == nil {
		t.Error("hvf accepted")
	}
}

func TestCPUFlags(t *testing.T) {
	path := t.TempDir() + "/cpuinfo"
	os.WriteFile(path, []byte("processor\t: 0\nflags\t\t: fpu svm lm\n\nprocessor\t: 1\nflags\t\t: fpu\n"), 0o600)
	if f := cpuFlags(path); !f["svm"] || !f["lm"] || len(f) != 3 {
		t.Errorf("cpuFlags = %v", f)
	}
}

// TestProbeThisHost runs the real probe. On a kvm_pvm host it must pick TCG
// and say why; elsewhere it only has to produce a reason.
func TestProbeThisHost(t *testing.T) {
	d, err := Choose(ModeAuto)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v", d)
	if d.Reason == "" {
		t.Error("no reason")
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		if _, err := os.Stat("/sys/module/kvm_intel"); err != nil {
			if d.Accel != hypervisor.AccelTCG || !strings.Contains(d.Reason, "kvm_pvm") {
				t.Errorf("on a kvm_pvm host got %v", d)
			}
			if _, err := Choose(ModeKVM); err == nil {
				t.Error("forcing kvm on a kvm_pvm host did not fail")
			}
		}
	}
}
