package testenv

import (
	"reflect"
	"testing"
)

func TestSplitRule(t *testing.T) {
	line := `-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -m comment --comment "CNI portfwd \"masq\" rule" -j MASQUERADE`
	want := []string{"-A", "CNI-HOSTPORT-MASQ", "-m", "mark", "--mark", "0x2000/0x2000", "-m", "comment",
		"--comment", `CNI portfwd "masq" rule`, "-j", "MASQUERADE"}
	got := splitRule(line)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splitRule:\n got %q\nwant %q", got, want)
	}
	if jumpTarget(got) != "MASQUERADE" {
		t.Errorf("jumpTarget %q", jumpTarget(got))
	}
}
