package hostbed

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestCNIConfigRender(t *testing.T) {
	bridge := map[string]any{
		"type": "bridge", "bridge": "br-t", "isGateway": false, "ipMasq": false, "hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  []any{[]any{map[string]any{"subnet": "10.213.4.0/24", "gateway": "10.213.4.1"}}},
			"routes":  []any{map[string]any{"dst": "0.0.0.0/0", "gw": "10.213.4.1"}},
			"dataDir": "/w/ipam",
		},
	}
	portmap := map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}
	for _, tc := range []struct {
		name    string
		portmap bool
		plugins []any
	}{
		{"bridge and host-local (benchmarks)", false, []any{bridge}},
		{"with portmap (tests, local cluster)", true, []any{bridge, portmap}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := CNIConfig{Name: "podvm-t", Bridge: "br-t", Subnet: netip.MustParsePrefix("10.213.4.0/24"),
				Gateway: netip.MustParseAddr("10.213.4.1"), IPAMDir: "/w/ipam", Portmap: tc.portmap}
			dir := t.TempDir()
			path, err := c.Write(filepath.Join(dir, "net.d"))
			if err != nil {
				t.Fatal(err)
			}
			if path != filepath.Join(dir, "net.d", "10-podvm-t.conflist") {
				t.Errorf("written to %s", path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, b)
			}
			want := map[string]any{"cniVersion": "1.0.0", "name": "podvm-t", "plugins": tc.plugins}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("conflist\n%s\nwant %#v", b, want)
			}
		})
	}
}

func TestPickSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name  string
		octet byte
		used  []netip.Prefix
		want  string
	}{
		{"nothing used", 214, nil, "10.214.0.0/24"},
		{"first two used", 214, []netip.Prefix{p("10.214.0.0/24"), p("10.214.1.5/32")}, "10.214.2.0/24"},
		{"unrelated", 214, []netip.Prefix{p("192.168.0.0/16"), p("10.213.0.0/16")}, "10.214.0.0/24"},
		{"the tests' range", 213, []netip.Prefix{p("10.214.0.0/16")}, "10.213.0.0/24"},
		{"all used", 214, []netip.Prefix{p("10.0.0.0/8")}, ""},
	} {
		got, err := PickSubnet(tc.octet, tc.used)
		if (tc.want == "") != (err != nil) || (err == nil && got.String() != tc.want) {
			t.Errorf("%s: %v %v, want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []netip.Prefix
	}{
		{"empty", "", nil},
		{"header only", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n", nil},
		{"default route left out", `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0100A8C0	0003	0	0	0	00000000	0	0	0
eth0	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
br0	0000C80A	00000000	0001	0	0	0	0000FFFF	0	0	0
`, []netip.Prefix{netip.MustParsePrefix("192.168.0.0/24"), netip.MustParsePrefix("10.200.0.0/16")}},
	} {
		if got := ParseRoutes(tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// RemoveCNIResults removes the named network's cached results and only
// those: another network's (another cluster's or test bed's) stay.
func TestRemoveCNIResults(t *testing.T) {
	dir := filepath.Join(CNICacheDir, "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("libcni's cache %s cannot be made here: %v", dir, err)
	}
	name := fmt.Sprintf("podvm-unit-%d", os.Getpid())
	ours := []string{filepath.Join(dir, name+"-aaaa-eth0"), filepath.Join(dir, name+"-bbbb-eth0")}
	other := filepath.Join(dir, name+"x-cccc-eth0")
	for _, f := range append(ours, other) {
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(f) })
	}
	removed, err := RemoveCNIResults(name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, ours) {
		t.Errorf("removed %q, want %q", removed, ours)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another network's result is gone: %v", err)
	}
	if got := cniResults(name); len(got) != 0 {
		t.Errorf("left: %q", got)
	}
}
