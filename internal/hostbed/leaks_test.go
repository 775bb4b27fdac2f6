package hostbed

import (
	"reflect"
	"testing"
)

func TestMountsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 0:40 / /tmp/podvm-ctrd-1/root/snap/1 rw - overlay overlay rw
41 22 0:41 / /tmp/podvm-ctrd-10 rw - tmpfs tmpfs rw
42 40 0:42 / /tmp/podvm-ctrd-1/state/netns/a\040b rw - nsfs nsfs rw
43 22 0:43 / /run/podvm-bench/sandboxes/x/shared rw - tmpfs tmpfs rw
`
	for _, tc := range []struct {
		name string
		dirs []string
		want []string
	}{
		{"one dir, last mounted first, not a sibling with the same prefix", []string{"/tmp/podvm-ctrd-1"},
			[]string{"/tmp/podvm-ctrd-1/state/netns/a b", "/tmp/podvm-ctrd-1/root/snap/1"}},
		{"a trailing slash", []string{"/tmp/podvm-ctrd-1/"},
			[]string{"/tmp/podvm-ctrd-1/state/netns/a b", "/tmp/podvm-ctrd-1/root/snap/1"}},
		{"the mount point itself", []string{"/tmp/podvm-ctrd-10"}, []string{"/tmp/podvm-ctrd-10"}},
		{"two dirs", []string{"/tmp/podvm-ctrd-10", "/run/podvm-bench"},
			[]string{"/run/podvm-bench/sandboxes/x/shared", "/tmp/podvm-ctrd-10"}},
		{"every mount", []string{"/"}, []string{"/run/podvm-bench/sandboxes/x/shared", "/tmp/podvm-ctrd-1/state/netns/a b",
			"/tmp/podvm-ctrd-10", "/tmp/podvm-ctrd-1/root/snap/1", "/"}},
		{"nothing", []string{"/var/lib/none"}, nil},
	} {
		if got := mountsUnder(info, tc.dirs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{{"short", 10, "short"}, {"exactly", 7, "exactly"}, {"longer than", 6, "longer..."}} {
		if got := Truncate(tc.s, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q", tc.s, tc.n, got)
		}
	}
}
