package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
)

func TestParseProcCgroup(t *testing.T) {
	hybrid := "12:pids:/podvm/c1\n4:memory:/podvm/c1\n3:cpu,cpuacct:/podvm/c1\n0::/\n"
	unified := "0::/podvm/c1\n"
	tests := []struct {
		name    string
		content string
		unified bool
		want    Cgroup
		wantErr bool
	}{
		{"v2", unified, true, Cgroup{V2: true, Root: Mountpoint, Path: "/podvm/c1"}, false},
		{"v1 memory line", hybrid, false, Cgroup{Root: "/sys/fs/cgroup/memory", Path: "/podvm/c1"}, false},
		{"v1 without memory", "3:cpu:/x\n", false, Cgroup{}, true},
		{"v2 without 0:: line", "4:memory:/x\n", true, Cgroup{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "cgroup")
			if err := os.WriteFile(f, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			got, err := parseProcCgroup(fh, tt.unified)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseProcCgroup = %+v, %v; want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestOfPidSelf(t *testing.T) {
	cg, err := OfPid(os.Getpid())
	if err != nil {
		t.Skipf("this host has no cgroup this package understands: %v", err)
	}
	if cg.V2 != Unified() || !strings.HasPrefix(cg.Path, "/") {
		t.Fatalf("OfPid(self) = %+v (unified %v)", cg, Unified())
	}
}

func TestReadKey(t *testing.T) {
	f := filepath.Join(t.TempDir(), "memory.events")
	if err := os.WriteFile(f, []byte("low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := ReadKey(f, "oom_kill"); n != 2 || err != nil {
		t.Fatalf("oom_kill = %d, %v", n, err)
	}
	if _, err := ReadKey(f, "absent"); err == nil {
		t.Fatal("absent key read without error")
	}
	v1 := filepath.Join(t.TempDir(), "memory.oom_control")
	if err := os.WriteFile(v1, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := Cgroup{Root: filepath.Dir(v1), Path: "/"}.OOMKills()
	if n != 5 || err != nil {
		t.Fatalf("v1 OOMKills = %d, %v", n, err)
	}
}

// fakeV2 lays out the files of a cgroup v2 group as the kernel shows them.
func fakeV2(t *testing.T) Cgroup {
	root := t.TempDir()
	cg := Cgroup{V2: true, Root: root, Path: "/podvm/c1"}
	files := map[string]string{
		"memory.current": "20971520\n",
		"memory.max":     "67108864\n",
		"memory.stat":    "anon 18874368\nfile 2097152\ninactive_file 1048576\nactive_file 1048576\npgfault 5000\npgmajfault 3\n",
		"memory.events":  "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"cpu.stat":       "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
		"pids.current":   "3\n",
		"pids.max":       "max\n",
		"cgroup.procs":   "10\n11\n",
	}
	for name, content := range files {
		writeFile(t, filepath.Join(cg.Dir(), name), content)
	}
	writeFile(t, filepath.Join(cg.Dir(), "child", "cgroup.procs"), "12\n")
	return cg
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStatV2 reads a fake v2 group and checks the fields containerd's CRI
// turns into `crictl stats` survive the protobuf encoding the agent sends.
func TestStatV2(t *testing.T) {
	st, err := fakeV2(t).Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var got stats.Metrics
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	m := got.GetMemory()
	if got.GetCPU().GetUsageUsec() != 1500000 || m.GetUsage() != 20971520 || m.GetUsageLimit() != 67108864 ||
		m.GetInactiveFile() != 1048576 || m.GetAnon() != 18874368 || got.GetPids().GetCurrent() != 3 {
		t.Fatalf("decoded metrics: %v", &got)
	}
}

func TestStatV1Refused(t *testing.T) {
	_, err := Cgroup{Root: "/sys/fs/cgroup/memory", Path: "/x"}.Stat()
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Stat of a v1 cgroup = %v, want FailedPrecondition", err)
	}
}

func TestProcsRecursive(t *testing.T) {
	pids, err := fakeV2(t).Procs()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(pids)
	if !slices.Equal(pids, []int{10, 11, 12}) {
		t.Fatalf("Procs = %v", pids)
	}
	gone, err := Cgroup{V2: true, Root: t.TempDir(), Path: "/gone"}.Procs()
	if err != nil || len(gone) != 0 {
		t.Fatalf("Procs of a removed cgroup = %v, %v", gone, err)
	}
}

func TestFromPath(t *testing.T) {
	cg, err := FromPath("/podvm/c1/")
	if err != nil || cg.Path != "/podvm/c1" || cg.V2 != Unified() {
		t.Fatalf("FromPath = %+v, %v", cg, err)
	}
	if _, err := FromPath("relative"); err == nil {
		t.Fatal("relative path accepted")
	}
}

// TestCreatePod checks the file work on a stand-in for the cgroup v2 root
// (the kernel's rules are exercised in the VM by the CRI pids test).
func TestCreatePod(t *testing.T) {
	root := t.TempDir()
	if err := CreatePod(root, "/kubepods/besteffort/pod0a1b", 40); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"", "kubepods", "kubepods/besteffort"} {
		b, err := os.ReadFile(filepath.Join(root, dir, "cgroup.subtree_control"))
		if err != nil || string(b) != "+pids" {
			t.Errorf("%s/cgroup.subtree_control = %q, %v; want +pids", dir, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "kubepods/besteffort/pod0a1b/pids.max")); err != nil || string(b) != "40" {
		t.Errorf("pids.max = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "kubepods/besteffort/pod0a1b/cgroup.subtree_control")); !os.IsNotExist(err) {
		t.Errorf("the pod cgroup's own subtree_control was written (%v): runc enables what its containers need", err)
	}
	// Again: harmless, the limit rewritten.
	if err := CreatePod(root, "/kubepods/besteffort/pod0a1b", 41); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "kubepods/besteffort/pod0a1b/pids.max")); string(b) != "41" {
		t.Errorf("pids.max after the second call = %q", b)
	}
	for _, bad := range []string{"", "/", "relative/pod"} {
		if err := CreatePod(root, bad, 40); !errdefs.IsInvalidArgument(err) {
			t.Errorf("CreatePod(%q) = %v, want invalid argument", bad, err)
		}
	}
	if err := CreatePod(root, "/pod", -1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("CreatePod with a negative limit = %v", err)
	}
}

// TestKillRefusesOwnCgroup: a cgroup that holds the agent is never a
// container's, and Kill must not send it SIGKILL. The cgroup here is a
// directory that looks like one and lists only this test's pid, so
// without the guard Kill kills this test binary (and nothing else).
func TestKillRefusesOwnCgroup(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		root := t.TempDir()
		dir := filepath.Join(root, "podvm", "ctr")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := Cgroup{V2: v2, Root: root, Path: "/podvm/ctr"}.Kill()
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("v2=%v: Kill of a cgroup holding the agent: %v, want a refusal", v2, err)
		}
		if v2 {
			if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
				t.Errorf("v2: cgroup.kill was written")
			}
		}
	}
}
