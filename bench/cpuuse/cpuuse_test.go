package cpuuse

import (
	"os"
	"testing"
)

func TestParseStatNameWithSpacesAndParens(t *testing.T) {
	line := []byte("4242 (CPU 0/TCG) (x)) S 1 2 3 4 5 6 7 8 9 10 110 220 330 440 15 16 17 18 9999 20\n")
	pid, name, f, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if pid != 4242 || name != "CPU 0/TCG) (x)" {
		t.Errorf("pid %d name %q", pid, name)
	}
	if num(f, 4) != 1 || num(f, 14) != 110 || num(f, 15) != 220 || num(f, 16) != 330 || num(f, 17) != 440 || num(f, 22) != 9999 {
		t.Errorf("fields %v", f)
	}
}

func TestDiffByComponent(t *testing.T) {
	before := &Snapshot{Busy: 1000, Idle: 500, Procs: []Proc{
		{Pid: 10, Name: "qemu-system-x86", Self: 100, Threads: map[string]uint64{"CPU 0/TCG": 80, "qemu-system-x86": 20}, start: 1},
		{Pid: 11, Name: "containerd", Self: 50, Children: 5, start: 1},
		{Pid: 12, Name: "gone", Self: 7, start: 1},
		{Pid: 13, Name: "reused", Self: 300, start: 1},
	}}
	after := &Snapshot{Busy: 1600, Idle: 900, Procs: []Proc{
		// 200 ticks more, 150 of them in the vCPU thread.
		{Pid: 10, Name: "qemu-system-x86", Self: 300, Threads: map[string]uint64{"CPU 0/TCG": 230, "qemu-system-x86": 70}, start: 1},
		// 30 of its own, 40 of children it reaped.
		{Pid: 11, Name: "containerd", Self: 80, Children: 45, start: 1},
		// A new process: counted from zero.
		{Pid: 14, Name: "shim", Self: 60, start: 5},
		// Pid 13 is another process now (another start time).
		{Pid: 13, Name: "reused", Self: 20, start: 9},
		// Not classified: in the rest.
		{Pid: 15, Name: "make", Self: 100, start: 9},
	}}
	got := Diff(before, after, func(p Proc) Class {
		switch p.Name {
		case "qemu-system-x86":
			return Class{Name: "qemu", Threads: func(th string) string {
				if th == "CPU 0/TCG" {
					return "vcpu"
				}
				return ""
			}}
		case "containerd":
			return Class{Name: "containerd", ChildrenName: "children"}
		case "shim", "reused":
			return Class{Name: "shim"}
		}
		return Class{}
	})
	want := Seconds{"vcpu": 1.5, "qemu": 0.5, "containerd": 0.3, "children": 0.4, "shim": 0.8,
		Rest: (600 - 150 - 50 - 30 - 40 - 80) / 100.0, Idle: 4}
	for k, v := range want {
		if d := got[k] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: %v s, want %v s", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("components %v, want %v", got, want)
	}
}

func TestTakeSeesThisProcess(t *testing.T) {
	for i, x := 0, 0; i < 50_000_000; i++ { // some CPU time of our own
		x += i
	}
	s, err := Take(func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if s.Busy == 0 {
		t.Error("no busy time on the host")
	}
	for _, p := range s.Procs {
		if p.Pid == os.Getpid() {
			if p.Self == 0 || len(p.Threads) == 0 || p.Cgroup == "" || len(p.Args) == 0 {
				t.Errorf("this process: %+v", p)
			}
			return
		}
	}
	t.Errorf("this process (%d) not in the snapshot", os.Getpid())
}
