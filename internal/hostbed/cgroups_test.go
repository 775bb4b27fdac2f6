package hostbed

import (
	"reflect"
	"testing"
)

func TestParseHierarchies(t *testing.T) {
	hybrid := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 41 0:38 /sub /mnt/elsewhere rw,relatime - cgroup2 cgroup2 rw
`
	v2 := "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	for _, tc := range []struct {
		name, text string
		want       []Hierarchy
	}{
		{"hybrid", hybrid, []Hierarchy{{Mount: "/sys/fs/cgroup/cpu"}, {Mount: "/sys/fs/cgroup/memory", Memory: true}, {Mount: "/sys/fs/cgroup/unified", V2: true}}},
		{"v2 only", v2, []Hierarchy{{Mount: "/sys/fs/cgroup", V2: true, Memory: true}}},
		{"none", "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n", nil},
	} {
		if got := ParseHierarchies(tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
