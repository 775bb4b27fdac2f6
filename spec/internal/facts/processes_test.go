package facts

import (
	"regexp"
	"testing"
)

const listing = `@@ 1
1 (init) S 0 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 7 1000 100 18446744073709551615
0::/
exe /sbin/init
@@ 4242
4242 (qemu-system-x86) S 4200 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 960132 1000 100 18446744073709551615
12:memory:/kubepods/besteffort/poddfb5fed7-c136-471a-a7fd-78ca244460ae
0::/
exe /usr/bin/qemu-system-x86_64
@@ 4300
4300 (my (odd) name) S 1 4300 4300 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 960200 1000 100 18446744073709551615
1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poddfb5fed7_c136_471a_a7fd_78ca244460ae.slice/cri-containerd-abc.scope
exe /usr/libexec/virtiofsd
@@ 4400
exe
@@ 4500
4500 (kubelet) S 1 4500 4500 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 30 0 500 1000 100 18446744073709551615
4:memory:/
exe /usr/bin/kubelet
`

func TestProcesses(t *testing.T) {
	procs := Processes(listing)
	if len(procs) != 4 {
		t.Fatalf("got %d processes, want 4 (the one without a stat line dropped): %+v", len(procs), procs)
	}
	q := procs[1]
	if q.PID != 4242 || q.Comm != "qemu-system-x86" || q.StartTime != 960132 || q.Exe != "/usr/bin/qemu-system-x86_64" || len(q.Cgroups) != 2 {
		t.Errorf("qemu record = %+v", q)
	}
	if odd := procs[2]; odd.Comm != "my (odd) name" || odd.StartTime != 960200 {
		t.Errorf("comm with brackets = %+v", odd)
	}
	if comms := Comms(procs); !comms["kubelet"] || comms["systemd"] {
		t.Errorf("Comms = %v", comms)
	}
}

func TestInPod(t *testing.T) {
	procs := Processes(listing)
	uid := "dfb5fed7-c136-471a-a7fd-78ca244460ae"
	in := InPod(procs, uid)
	if len(in) != 2 || in[0].PID != 4242 || in[1].PID != 4300 {
		t.Fatalf("InPod (cgroupfs and systemd spellings) = %+v", in)
	}
	if got := InPod(procs, "00000000-0000-0000-0000-000000000000"); len(got) != 0 {
		t.Errorf("InPod(other uid) = %+v", got)
	}
}

func TestMatching(t *testing.T) {
	procs := Processes(listing)
	re := regexp.MustCompile(`qemu-system|cloud-hyperviso|firecracker`)
	m := Matching(procs, re)
	if len(m) != 1 || m[0].PID != 4242 {
		t.Errorf("Matching = %+v", m)
	}
	// The executable's name counts when comm was renamed.
	renamed := []Process{{PID: 9, Comm: "vcpu0", Exe: "/opt/bin/cloud-hypervisor"}}
	if got := Matching(renamed, re); len(got) != 1 {
		t.Errorf("Matching by exe = %+v", got)
	}
}

func TestStillAlive(t *testing.T) {
	before := Identities([]Process{{PID: 10, StartTime: 100}, {PID: 11, StartTime: 110}})
	now := []Process{
		{PID: 10, StartTime: 100, Comm: "leaked"},
		{PID: 11, StartTime: 999, Comm: "pid reused"},
		{PID: 12, StartTime: 120, Comm: "new"},
	}
	alive := StillAlive(before, now)
	if len(alive) != 1 || alive[0].Comm != "leaked" {
		t.Errorf("StillAlive = %+v", alive)
	}
}

func TestPickMemoryCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     MemoryCgroup
		ok       bool
	}{
		{
			"v1 hybrid",
			"v1 /host-cgroup/memory/kubepods/besteffort/podX\n",
			MemoryCgroup{"/host-cgroup/memory/kubepods/besteffort/podX", "/host-cgroup/memory/kubepods/besteffort/podX/memory.usage_in_bytes", "/host-cgroup/memory/kubepods/besteffort/podX/memory.max_usage_in_bytes"},
			true,
		},
		{
			"v2 systemd, shortest wins",
			"v2 /host-cgroup/kubepods.slice/kubepods-podX.slice/inner-podX\nv2 /host-cgroup/kubepods.slice/kubepods-podX.slice\n",
			MemoryCgroup{"/host-cgroup/kubepods.slice/kubepods-podX.slice", "/host-cgroup/kubepods.slice/kubepods-podX.slice/memory.current", "/host-cgroup/kubepods.slice/kubepods-podX.slice/memory.peak"},
			true,
		},
		{"nothing", "\n", MemoryCgroup{}, false},
		{"noise", "find: permission denied\n", MemoryCgroup{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PickMemoryCgroup(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("PickMemoryCgroup = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
