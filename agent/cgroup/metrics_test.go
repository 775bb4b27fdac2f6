package cgroup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
)

// TestReadMetricsMatchesLibrary compares readMetrics with the cgroups
// library's Manager.Stat, which it replaces, on cgroup directories made of
// files as the kernel writes them: a full one, an empty one, one with odd
// values ("max", negative, PSI, io and rdma lines, a bad io device).
func TestReadMetricsMatchesLibrary(t *testing.T) {
	full := map[string]string{
		"pids.current":        "7\n",
		"pids.max":            "max\n",
		"cpu.stat":            "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\nnr_throttled 2\nthrottled_usec 999\nnr_bursts 1\nburst_usec 5\n",
		"cpu.pressure":        "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"memory.stat":         "anon 1048576\nfile 2097152\nkernel_stack 16384\nslab 65536\nsock 0\nshmem 4096\nfile_mapped 8192\nfile_dirty 0\nfile_writeback 0\nanon_thp 0\ninactive_anon 4096\nactive_anon 1044480\ninactive_file 1048576\nactive_file 1048576\nunevictable 0\nslab_reclaimable 32768\nslab_unreclaimable 32768\npgfault 1234\npgmajfault 5\nworkingset_refault 1\nworkingset_activate 2\nworkingset_nodereclaim 3\npgrefill 4\npgscan 5\npgsteal 6\npgactivate 7\npgdeactivate 8\npglazyfree 9\npglazyfreed 10\nthp_fault_alloc 11\nthp_collapse_alloc 12\nsomething_new 13\n",
		"memory.current":      "3145728\n",
		"memory.max":          "33554432\n",
		"memory.peak":         "4194304\n",
		"memory.swap.current": "0\n",
		"memory.swap.max":     "max\n",
		"memory.events":       "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
		"memory.pressure":     "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
		"io.stat":             "253:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=3 wios=4\n",
		"io.pressure":         "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"rdma.current":        "mlx4_0 hca_handle=2 hca_object=2000\n",
		"rdma.max":            "mlx4_0 hca_handle=max hca_object=max\n",
	}
	odd := map[string]string{
		"pids.current":  "-1\n",
		"pids.max":      "100\n",
		"cpu.stat":      "",
		"memory.events": "",
		"io.stat":       "253:0 rbytes=1 wbytes=x rios=2 wios=3\nx:1 rbytes=9\n8:0 rbytes=7\n",
		"memory.max":    "garbage\n",
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"full", full},
		{"empty directory", nil},
		{"odd values", odd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "pod", "ctr")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := cgroup2.Load("/pod/ctr", cgroup2.WithMountpoint(root))
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Stat()
			if err != nil {
				t.Fatal(err)
			}
			got, err := readMetrics(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("readMetrics differs from the library (-library +ours):\n%s", cmp.Diff(want, got, protocmp.Transform()))
			}
		})
	}
}

func TestReadMetricsMalformed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "memory.stat"), []byte("anon 1 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readMetrics(dir); err == nil {
		t.Fatal("a malformed memory.stat was accepted")
	}
}
