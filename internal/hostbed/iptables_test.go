package hostbed

import (
	"reflect"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		line, jump string
		want       []string
	}{
		{`-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -m comment --comment "CNI portfwd \"masq\" rule" -j MASQUERADE`, "MASQUERADE",
			[]string{"-A", "CNI-HOSTPORT-MASQ", "-m", "mark", "--mark", "0x2000/0x2000", "-m", "comment",
				"--comment", `CNI portfwd "masq" rule`, "-j", "MASQUERADE"}},
		{`-A OUTPUT -m comment --comment "kubernetes firewall" -g KUBE-FIREWALL`, "KUBE-FIREWALL",
			[]string{"-A", "OUTPUT", "-m", "comment", "--comment", "kubernetes firewall", "-g", "KUBE-FIREWALL"}},
		{`-N CNI-HOSTPORT-DNAT`, "", []string{"-N", "CNI-HOSTPORT-DNAT"}},
		{`-A POSTROUTING  -s 10.0.0.0/8 -j RETURN`, "RETURN", []string{"-A", "POSTROUTING", "-s", "10.0.0.0/8", "-j", "RETURN"}},
	} {
		got := splitRule(tc.line)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitRule(%s):\n got %q\nwant %q", tc.line, got, tc.want)
		}
		if j := jumpTarget(got); j != tc.jump {
			t.Errorf("jumpTarget(%s) = %q, want %q", tc.line, j, tc.jump)
		}
	}
}

func TestChainsOurs(t *testing.T) {
	c := Chains{Prefixes: []string{"CNI-", "KUBE-"}}
	for chain, want := range map[string]bool{"CNI-HOSTPORT-DNAT": true, "KUBE-FIREWALL": true, "DOCKER": false, "POSTROUTING": false, "XCNI-": false} {
		if got := c.ours(chain); got != want {
			t.Errorf("ours(%s) = %v", chain, got)
		}
	}
}
