package hypervisor

import "testing"

func TestParseAccelerator(t *testing.T) {
	for in, want := range map[string]Accelerator{"": AccelAuto, "auto": AccelAuto, "KVM": AccelKVM, " tcg ": AccelTCG} {
		if got, err := ParseAccelerator(in); err != nil || got != want {
			t.Errorf("ParseAccelerator(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseAccelerator("hvf"); err == nil {
		t.Error("hvf accepted")
	}
}
