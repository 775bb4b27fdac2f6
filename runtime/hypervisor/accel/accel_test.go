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
		name       string
		configured hypervisor.Accelerator
		facts      Facts
		want       hypervisor.Accelerator
		why        string // substring of the reason or error
		wantErr    bool
	}{
		{"intel host", hypervisor.AccelAuto, working(set("vmx", "lm"), set("kvm_intel")), hypervisor.AccelKVM, "kvm_intel, vmx", false},
		{"amd host", hypervisor.AccelAuto, working(set("svm"), set("kvm_amd")), hypervisor.AccelKVM, "kvm_amd, svm", false},
		{"pvm host (this project's)", hypervisor.AccelAuto, working(set("hypervisor", "lm"), set("kvm_pvm")), hypervisor.AccelTCG,
			"/dev/kvm is kvm_pvm (software), no vmx/svm", false},
		{"pvm next to vmx", hypervisor.AccelAuto, working(set("vmx"), set("kvm_pvm")), hypervisor.AccelTCG, "kvm_pvm (software)", false},
		{"vendor module beats pvm", hypervisor.AccelAuto, working(set("vmx"), set("kvm_pvm", "kvm_intel")), hypervisor.AccelKVM, "kvm_intel", false},
		{"no flag, no module", hypervisor.AccelAuto, working(set("lm"), set()), hypervisor.AccelTCG, "no vmx/svm flag", false},
		{"flag only (module not visible)", hypervisor.AccelAuto, working(set("svm"), set()), hypervisor.AccelKVM, "svm", false},
		{"no /dev/kvm", hypervisor.AccelAuto, Facts{OpenErr: syscall.ENOENT}, hypervisor.AccelTCG, "cannot open /dev/kvm: no such file", false},
		{"no permission", hypervisor.AccelAuto, Facts{OpenErr: syscall.EACCES}, hypervisor.AccelTCG, "permission denied", false},
		{"create VM fails", hypervisor.AccelAuto, Facts{APIVersion: 12, CreateVMErr: syscall.EBUSY, CPUFlags: set("vmx"), Modules: set("kvm_intel")},
			hypervisor.AccelTCG, "cannot create a VM", false},
		{"forced tcg", hypervisor.AccelTCG, working(set("vmx"), set("kvm_intel")), hypervisor.AccelTCG, "forced by configuration", false},
		{"forced kvm ok", hypervisor.AccelKVM, working(set("vmx"), set("kvm_intel")), hypervisor.AccelKVM, "forced by configuration; /dev/kvm API 12", false},
		{"forced kvm on pvm", hypervisor.AccelKVM, working(set(), set("kvm_pvm")), "", "accelerator kvm is configured but this host cannot use it: /dev/kvm is kvm_pvm", true},
		{"forced kvm without /dev/kvm", hypervisor.AccelKVM, Facts{OpenErr: syscall.ENOENT}, "", "set accelerator to auto or tcg", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why, err := Decide(tt.configured, tt.facts)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.why) {
					t.Fatalf("err = %v, want one containing %q", err, tt.why)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || !strings.Contains(why, tt.why) {
				t.Errorf("Decide = %s, %q; want %s with reason containing %q", got, why, tt.want, tt.why)
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
	got, why, err := Choose(hypervisor.AccelAuto)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accelerator %s: %s", got, why)
	if why == "" {
		t.Error("no reason")
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		if _, err := os.Stat("/sys/module/kvm_intel"); err != nil {
			if got != hypervisor.AccelTCG || !strings.Contains(why, "kvm_pvm") {
				t.Errorf("on a kvm_pvm host got %s: %s", got, why)
			}
			if _, _, err := Choose(hypervisor.AccelKVM); err == nil {
				t.Error("forcing kvm on a kvm_pvm host did not fail")
			}
		}
	}
}
