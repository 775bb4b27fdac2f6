package hostcgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      string
	}{
		{in: "", want: ""},
		{in: "/kubepods/besteffort/pod0a1b/5f3e", want: "/kubepods/besteffort/pod0a1b/5f3e"},
		{in: "/kubepods//burstable/pod1/../pod2/abc/", want: "/kubepods/burstable/pod2/abc"},
		{in: "/", err: "root cgroup"},
		{in: "kubepods/pod1/abc", err: "neither"},
		{
			in:   "kubepods-besteffort-pod0a1b.slice:cri-containerd:5f3e",
			want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b.slice/cri-containerd-5f3e.scope",
		},
		{in: "kubepods.slice:cri-containerd:5f3e", want: "/kubepods.slice/cri-containerd-5f3e.scope"},
		{in: "-.slice:cri-containerd:5f3e", want: "/cri-containerd-5f3e.scope"},
		{in: ":cri-containerd:5f3e", want: "/system.slice/cri-containerd-5f3e.scope"},
		{in: "kubepods.slice::5f3e", want: "/kubepods.slice/5f3e.scope"},
		{in: "kubepods.slice:cri-containerd:pod1.slice", want: "/kubepods.slice/pod1.slice"},
		{in: "kubepods.slice:cri-containerd:", err: "no unit name"},
		{in: "kubepods:cri-containerd:5f3e", err: "want a name like"},
		{in: "kube--pods.slice:cri-containerd:5f3e", err: "empty component"},
		{in: "-kubepods.slice:cri-containerd:5f3e", err: "empty component"},
		{in: "a/b.slice:cri-containerd:5f3e", err: "want a name like"},
		{in: "kubepods.slice:cri-containerd:a/b", err: "slash"},
		{in: "a:b", err: "neither"},
	} {
		got, err := ParsePath(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePath(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParent(t *testing.T) {
	if got := Parent("/kubepods/besteffort/pod0a1b/5f3e"); got != "/kubepods/besteffort/pod0a1b" {
		t.Errorf("Parent = %q", got)
	}
}

// A hybrid host as these machines have it, plus a second mount of the
// memory hierarchy and a bind mount of a sub-cgroup, both to be ignored.
const hybridMountinfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 / /mnt/memory-again rw,relatime - cgroup cgroup rw,memory
51 23 0:36 /kubepods /mnt/kubepods-pids rw,relatime - cgroup cgroup rw,pids
52 23 0:40 / /proc rw - proc proc rw
`

func TestParseHierarchiesHybrid(t *testing.T) {
	hs, err := parseHierarchies(strings.NewReader(hybridMountinfo), func(string) []string { return nil })
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, h := range hs {
		dirs = append(dirs, h.dir)
		if h.cpuset != (h.dir == "/sys/fs/cgroup/cpuset") || h.pids != (h.dir == "/sys/fs/cgroup/pids") {
			t.Errorf("%s: cpuset %v pids %v", h.dir, h.cpuset, h.pids)
		}
		if h.memory != (h.dir == "/sys/fs/cgroup/memory") || h.v2 != (h.dir == "/sys/fs/cgroup/unified") {
			t.Errorf("%s: memory %v v2 %v; the memory hierarchy is v1's, and the controller-less unified one is v2", h.dir, h.memory, h.v2)
		}
	}
	want := []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/memory",
		"/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}
	if !slices.Equal(dirs, want) {
		t.Errorf("hierarchies %q, want %q", dirs, want)
	}
}

func TestParseHierarchiesUnified(t *testing.T) {
	const mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
	hs, err := parseHierarchies(strings.NewReader(mi), func(mp string) []string {
		return []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].dir != "/sys/fs/cgroup" || !hs[0].pids || hs[0].cpuset {
		t.Errorf("hierarchies %+v, want one unified one with pids", hs)
	}
	if !hs[0].memory || !hs[0].v2 {
		t.Errorf("hierarchy %+v: the unified one must charge memory, with v2's files", hs[0])
	}
}

// fakeHierarchies are directories standing in for cgroup mounts: enough to
// test the file work, not the kernel's rules.
func fakeHierarchies(t *testing.T) []hierarchy {
	root := t.TempDir()
	hs := []hierarchy{{dir: filepath.Join(root, "memory")}, {dir: filepath.Join(root, "cpuset"), cpuset: true}, {dir: filepath.Join(root, "pids"), pids: true}}
	for _, h := range hs {
		if err := os.Mkdir(h.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(root, "cpuset", "cpuset.cpus"), "0-1\n")
	write(t, filepath.Join(root, "cpuset", "cpuset.mems"), "0\n")
	return hs
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateAddDelete(t *testing.T) {
	hs := fakeHierarchies(t)
	const p = "/kubepods/besteffort/pod0a1b/5f3e"
	c, err := create(hs, p)
	if err != nil {
		t.Fatal(err)
	}
	// Each new cpuset level has its parent's CPUs and memory nodes.
	cpuset := hs[1].dir
	for _, lvl := range []string{"/kubepods", "/kubepods/besteffort", "/kubepods/besteffort/pod0a1b", p} {
		if got := read(t, filepath.Join(cpuset, lvl, "cpuset.cpus")); got != "0-1\n" {
			t.Errorf("%s cpuset.cpus = %q", lvl, got)
		}
		if got := read(t, filepath.Join(cpuset, lvl, "cpuset.mems")); got != "0\n" {
			t.Errorf("%s cpuset.mems = %q", lvl, got)
		}
	}
	if err := c.Add(4242); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if got := read(t, filepath.Join(h.dir, p, "cgroup.procs")); got != "4242" {
			t.Errorf("%s: cgroup.procs = %q", h.dir, got)
		}
		// A real cgroup directory has only kernel files, which rmdir
		// ignores; here the test's own files must go first.
		os.Remove(filepath.Join(h.dir, p, "cgroup.procs"))
		os.Remove(filepath.Join(h.dir, p, "cpuset.cpus"))
		os.Remove(filepath.Join(h.dir, p, "cpuset.mems"))
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h.dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s: leaf still there (%v)", h.dir, err)
		}
		// The pod cgroup is the kubelet's: left alone.
		if _, err := os.Stat(filepath.Join(h.dir, Parent(p))); err != nil {
			t.Errorf("%s: pod cgroup removed: %v", h.dir, err)
		}
	}
	if err := c.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestDeleteReportsBusy(t *testing.T) {
	hs := fakeHierarchies(t)[:1]
	c, err := create(hs, "/pod/x")
	if err != nil {
		t.Fatal(err)
	}
	// A directory that is not empty stands in for one the kernel refuses
	// to remove (ENOTEMPTY, not retried).
	write(t, filepath.Join(hs[0].dir, "pod/x/cgroup.procs"), "77\n")
	if err := c.Delete(); err == nil || !strings.Contains(err.Error(), "/pod/x") {
		t.Errorf("Delete of a non-empty cgroup: %v", err)
	}
}

func TestReadPidsMax(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		want    int64
		limited bool
		err     bool
	}{
		{"max\n", 0, false, false},
		{"1024\n", 1024, true, false},
		{"0\n", 0, true, false},
		{"lots\n", 0, false, true},
		{"-5\n", 0, false, true},
	} {
		f := filepath.Join(dir, "pids.max")
		write(t, f, tc.content)
		n, limited, err := readPidsMax(f)
		if (err != nil) != tc.err || n != tc.want || limited != tc.limited {
			t.Errorf("readPidsMax(%q) = %d, %v, %v", tc.content, n, limited, err)
		}
	}
	if n, limited, err := readPidsMax(filepath.Join(dir, "missing")); n != 0 || limited || err != nil {
		t.Errorf("readPidsMax(missing) = %d, %v, %v", n, limited, err)
	}
}

// TestHostCgroup does the real thing on this host's hierarchies: a process
// moved in shows the path in every line of /proc/<pid>/cgroup, and the
// cgroup goes once the process is gone.
func TestHostCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	parent := fmt.Sprintf("/podvm-hostcgroup-test-%d", os.Getpid())
	p := parent + "/pod1/sandbox1"
	c, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Remove(parent + "/pod1")
		Remove(parent)
	})
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	lines := strings.Fields(read(t, fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid)))
	hs, _ := hostHierarchies()
	if len(lines) < len(hs) {
		t.Errorf("/proc/pid/cgroup has %d lines for %d hierarchies", len(lines), len(hs))
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, ":"+p) {
			t.Errorf("/proc/pid/cgroup line %q is not in %s", l, p)
		}
	}
	if err := c.Delete(); err == nil {
		t.Error("Delete succeeded with a process inside")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h.dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", filepath.Join(h.dir, p), err)
		}
	}
}

func TestWorkingSet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     hierarchy
		files map[string]string
		want  uint64
		err   bool
	}{
		{"v1", hierarchy{memory: true}, map[string]string{
			"memory.usage_in_bytes": "300000\n", "memory.stat": "cache 5\ninactive_file 1\ntotal_inactive_file 100000\n"}, 200000, false},
		{"v2", hierarchy{memory: true, v2: true}, map[string]string{
			"memory.current": "300000\n", "memory.stat": "anon 7\ninactive_file 50000\n"}, 250000, false},
		{"inactive above usage", hierarchy{memory: true, v2: true}, map[string]string{
			"memory.current": "10\n", "memory.stat": "inactive_file 50\n"}, 0, false},
		{"no stat key", hierarchy{memory: true, v2: true}, map[string]string{
			"memory.current": "10\n", "memory.stat": "anon 7\n"}, 0, true},
		{"no usage", hierarchy{memory: true}, map[string]string{"memory.stat": "total_inactive_file 1\n"}, 0, true},
	} {
		root := t.TempDir()
		tc.h.dir = root
		if err := os.MkdirAll(filepath.Join(root, "pod", "sb"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, v := range tc.files {
			if err := os.WriteFile(filepath.Join(root, "pod", "sb", name), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := tc.h.workingSet("/pod/sb")
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%s: workingSet = %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}
