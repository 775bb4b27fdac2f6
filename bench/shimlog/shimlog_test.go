package shimlog

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseLogfmt(t *testing.T) {
	for _, tc := range []struct {
		line string
		want map[string]string
	}{
		{`time="2026-01-02T03:04:05.123Z" level=info msg="pod VM ready" sandbox=abc n=12`,
			map[string]string{"time": "2026-01-02T03:04:05.123Z", "level": "info", "msg": "pod VM ready", "sandbox": "abc", "n": "12"}},
		{`msg="say \"hi\" \\ there" k=`, map[string]string{"msg": `say "hi" \ there`, "k": ""}},
		{`garbage words msg=x`, map[string]string{"msg": "x"}},
		{`k="unterminated`, map[string]string{"k": "unterminate"}},
		{``, map[string]string{}},
	} {
		if got := ParseLogfmt(tc.line); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseLogfmt(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// logSample is containerd's log around one podvm `ctr run`, as the shim
// writes it (abridged).
const logSample = `time="2026-11-25T22:00:00.000000000Z" level=info msg="loading plugin" id=io.containerd.grpc.v1.cri
time="2026-11-25T22:00:01.000000000Z" level=info msg="pod VM ready" accelerator=tcg agent=dev boot_to_agent=712ms guest_agent_ready_ns=430000000 guest_agent_started_ns=400000000 guest_clock_ns=450000000 guest_kernel=6.1.192-podvm host_agent_ready_ns=1764108001000000000 host_sandbox_begin_ns=1764108000200000000 host_sandbox_ready_ns=1764108001050000000 host_shim_started_ns=1764108000100000000 host_vmm_running_ns=1764108000400000000 host_vmm_spawned_ns=1764108000300000000 namespace=podvm-bench sandbox=boot-1 transport=serial
time="2026-11-25T22:00:01.100000000Z" level=info msg="container started in the pod VM" container=boot-1 host_started_ns=1764108001100000000 namespace=podvm-bench
time="2026-11-25T22:00:01.200000000Z" level=info msg="container started in the pod VM" container=marked guest_create_begin_ns=470000000 guest_start_end_ns=520000000 host_started_ns=1764108001200000000 namespace=podvm-bench
time="2026-11-25T22:00:02.000000000Z" level=info msg="pod VM ready" boot_to_agent=1s sandbox=old-shim
time="2026-11-25T22:00:03.000000000Z" level=debug msg="exec ended in the pod VM" container=marked exec=e1 guest_exec_begin_ns=600000000 guest_exited_ns=700000000 host_drained_ns=1764108003000000000 host_exec_begin_ns=1764108002900000000 namespace=podvm-bench
time="2026-11-25T22:00:04.000000000Z" level=info msg="container deleted from the pod VM" container=boot-1 host_delete_begin_ns=1764108004000000000 host_delete_answered_ns=1764108004050000000 namespace=podvm-bench
time="2026-11-25T22:00:04.100000000Z" level=info msg="pod VM destroyed" guest_ms=1 host_destroy_begin_ns=1764108004060000000 host_share_done_ns=1764108004090000000 namespace=podvm-bench sandbox=boot-1
time="2026-11-25T22:00:04.100000000Z" level=info msg="shim shut down" container=boot-1 host_shutdown_answered_ns=1764108004100000000 namespace=podvm-bench
`

func TestRead(t *testing.T) {
	l, err := Read(strings.NewReader(logSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.VMs) != 1 {
		t.Fatalf("VMs %v: want only boot-1 (old-shim's line has no phases)", l.VMs)
	}
	v := l.VMs["boot-1"]
	base := time.Unix(0, 1764108000000000000)
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	if v.Accelerator != "tcg" || v.Transport != "serial" || v.GuestKernel != "6.1.192-podvm" {
		t.Errorf("identity %+v", v)
	}
	for name, got := range map[string]time.Time{
		"shim": v.ShimStarted, "begin": v.SandboxBegin, "spawn": v.VMMSpawned, "running": v.VMMRunning,
		"agent": v.AgentReady, "ready": v.SandboxReady,
	} {
		want := map[string]time.Time{"shim": ms(100), "begin": ms(200), "spawn": ms(300), "running": ms(400), "agent": ms(1000), "ready": ms(1050)}[name]
		if !got.Equal(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// The answer said 450 ms of guest time and arrived at 1000 ms.
	if !v.KernelEntry().Equal(ms(550)) || !v.Guest(v.GuestAgentReady).Equal(ms(980)) {
		t.Errorf("kernel entry %v, agent ready %v", v.KernelEntry(), v.Guest(v.GuestAgentReady))
	}
	if got := l.ContainerStarted["boot-1"]; !got.Equal(ms(1100)) {
		t.Errorf("container started %v", got)
	}
	if got := l.ContainerGuestMarks["boot-1"]; len(got) != 0 {
		t.Errorf("guest marks of a line without them: %v", got)
	}
	want := map[string]time.Duration{"create_begin": 470 * time.Millisecond, "start_end": 520 * time.Millisecond}
	if got := l.ContainerGuestMarks["marked"]; !reflect.DeepEqual(got, want) {
		t.Errorf("guest marks %v, want %v", got, want)
	}
	wantExec := []ExecEnded{{Container: "marked", Exec: "e1",
		Host:  map[string]time.Time{"exec_begin": ms(2900), "drained": ms(3000)},
		Guest: map[string]time.Duration{"exec_begin": 600 * time.Millisecond, "exited": 700 * time.Millisecond}}}
	if !reflect.DeepEqual(l.Execs, wantExec) {
		t.Errorf("execs %+v, want %+v", l.Execs, wantExec)
	}
	wantTeardown := map[string]map[string]time.Time{"boot-1": {
		"delete_begin": ms(4000), "delete_answered": ms(4050), "destroy_begin": ms(4060), "share_done": ms(4090), "shutdown_answered": ms(4100),
	}}
	if !reflect.DeepEqual(l.Teardowns, wantTeardown) {
		t.Errorf("teardowns %v, want %v", l.Teardowns, wantTeardown)
	}
}
