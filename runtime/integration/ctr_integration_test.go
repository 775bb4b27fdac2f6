package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/internal/hostbed"
)

// ctrRunTimeout bounds one container run: boot under TCG is about a second,
// so a minute means something is stuck, not slow.
const ctrRunTimeout = time.Minute

type podvmCtr struct {
	c     *testContainerd
	env   *testEnv
	image string
}

func newPodvmCtr(t *testing.T) *podvmCtr {
	env := requireEnv(t)
	c := startContainerd(t, env, "")
	return &podvmCtr{c: c, env: env, image: c.ImportBusybox(t)}
}

// run is `ctr run --rm` with the podvm runtime and config cfgPath.
func (p *podvmCtr) run(t *testing.T, cfgPath string, stdin []byte, id string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
	defer cancel()
	full := append([]string{"run", "--rm", "--runtime", p.env.ShimBinary, "--runtime-config-path", cfgPath, p.image, id}, args...)
	return p.c.Ctr(ctx, stdin, full...)
}

func assertNoLeaks(t *testing.T, id string) {
	t.Helper()
	// The shim exits right after the task is deleted; give it a moment.
	var leaks []string
	for i := 0; i < 50; i++ {
		if leaks = hostbed.Leaks(id); len(leaks) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("left behind for %s:\n  %s", id, strings.Join(leaks, "\n  "))
}

func TestCtrRunIntegration(t *testing.T) {
	p := newPodvmCtr(t)
	cfg := p.env.ConfigPath

	t.Run("guest kernel differs from host", func(t *testing.T) {
		r := p.run(t, cfg, nil, "podvm-uname", "uname", "-r")
		if r.ExitCode != 0 {
			t.Fatalf("exit %d, stderr: %s", r.ExitCode, r.Stderr)
		}
		var u unix.Utsname
		unix.Uname(&u)
		host := unix.ByteSliceToString(u.Release[:])
		guest := strings.TrimSpace(r.Stdout)
		want, _ := os.ReadFile(filepath.Join(p.env.Prefix, "share", "podvm", "kernel.release"))
		if guest == "" || guest == host {
			t.Fatalf("guest kernel release %q must differ from the host's %q", guest, host)
		}
		if w := strings.TrimSpace(string(want)); w != "" && guest != w {
			t.Errorf("guest runs kernel %q, want the installed podvm kernel %q", guest, w)
		}
		t.Logf("host %s, guest %s, ctr run took %s", host, guest, r.Duration)
		assertNoLeaks(t, "podvm-uname")
	})

	t.Run("exit code and separate streams", func(t *testing.T) {
		r := p.run(t, cfg, nil, "podvm-streams", "sh", "-c", "echo out; echo err >&2; exit 7")
		if r.ExitCode != 7 {
			t.Errorf("exit code %d, want 7 (stderr %q)", r.ExitCode, r.Stderr)
		}
		if r.Stdout != "out\n" {
			t.Errorf("stdout %q, want %q", r.Stdout, "out\n")
		}
		if r.Stderr != "err\n" {
			t.Errorf("stderr %q, want %q", r.Stderr, "err\n")
		}
		assertNoLeaks(t, "podvm-streams")
	})

	t.Run("stdin reaches the container", func(t *testing.T) {
		in := "hello from the host\nsecond line\n"
		r := p.run(t, cfg, []byte(in), "podvm-stdin", "cat")
		if r.ExitCode != 0 || r.Stdout != in {
			t.Errorf("cat: exit %d, stdout %q, want %q (stderr %q)", r.ExitCode, r.Stdout, in, r.Stderr)
		}
		assertNoLeaks(t, "podvm-stdin")
	})

	t.Run("large output is complete", func(t *testing.T) {
		// 4 MiB through the relay: nothing may be lost at exit.
		r := p.run(t, cfg, nil, "podvm-flood", "sh", "-c", "dd if=/dev/zero bs=4096 count=1024 2>/dev/null | wc -c")
		if strings.TrimSpace(r.Stdout) != "4194304" {
			t.Errorf("wc -c in guest printed %q, want 4194304", r.Stdout)
		}
		r = p.run(t, cfg, nil, "podvm-flood2", "dd", "if=/dev/zero", "bs=65536", "count=64")
		if len(r.Stdout) != 64*65536 {
			t.Errorf("received %d bytes of stdout, want %d", len(r.Stdout), 64*65536)
		}
		assertNoLeaks(t, "podvm-flood")
	})

	t.Run("exec, ps and metrics of a running container", func(t *testing.T) {
		id := "podvm-exec"
		ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
		defer cancel()
		r := p.c.Ctr(ctx, nil, "run", "-d", "--runtime", p.env.ShimBinary, "--runtime-config-path", cfg, p.image, id,
			"sh", "-c", "echo state > /tmp/marker; exec sleep 1000")
		if r.ExitCode != 0 {
			t.Fatalf("ctr run -d: exit %d, %s", r.ExitCode, r.Stderr)
		}
		defer func() {
			p.c.Ctr(context.Background(), nil, "task", "kill", "--signal", "SIGKILL", id)
			time.Sleep(time.Second)
			p.c.Ctr(context.Background(), nil, "task", "delete", "--force", id)
			p.c.Ctr(context.Background(), nil, "container", "rm", id)
			assertNoLeaks(t, id)
		}()

		r = p.c.Ctr(ctx, nil, "task", "exec", "--exec-id", "e1", id, "sh", "-c", "cat /tmp/marker; echo exec-err >&2; exit 3")
		if r.ExitCode != 3 || r.Stdout != "state\n" || r.Stderr != "exec-err\n" {
			t.Errorf("exec: exit %d (want 3), stdout %q (want the container's file), stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		r = p.c.Ctr(ctx, []byte("through exec stdin\n"), "task", "exec", "--exec-id", "e2", id, "cat")
		if r.ExitCode != 0 || r.Stdout != "through exec stdin\n" {
			t.Errorf("exec cat: exit %d, stdout %q", r.ExitCode, r.Stdout)
		}
		r = p.c.Ctr(ctx, nil, "task", "exec", "--exec-id", "e1", id, "true")
		if r.ExitCode != 0 {
			t.Errorf("an exec id can be reused once its process is gone: exit %d, %s", r.ExitCode, r.Stderr)
		}

		ps := p.c.MustCtr(t, "task", "ps", id)
		if lines := strings.Split(strings.TrimSpace(ps), "\n"); len(lines) < 2 {
			t.Errorf("ctr task ps lists no guest process:\n%s", ps)
		}

		metrics := p.c.MustCtr(t, "task", "metrics", "--format", "json", id)
		var m struct {
			Memory struct {
				Usage uint64 `json:"usage"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
		}
		if err := json.Unmarshal([]byte(metrics), &m); err != nil {
			t.Fatalf("ctr task metrics: %v\n%s", err, metrics)
		}
		if m.Memory.Usage == 0 || m.Pids.Current == 0 {
			t.Errorf("guest cgroup metrics look empty: memory usage %d, pids %d\n%s", m.Memory.Usage, m.Pids.Current, metrics)
		}
		t.Logf("guest cgroup: memory usage %d bytes, %d pids", m.Memory.Usage, m.Pids.Current)
	})

	t.Run("memory limit: OOM kill reported, not the VM's death", func(t *testing.T) {
		id := "podvm-oom"
		ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
		defer cancel()
		events := exec.CommandContext(ctx, p.env.Ctr, "--address", p.c.Address, "events")
		var evOut strings.Builder
		events.Stdout = &evOut
		if err := events.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { events.Process.Kill(); events.Wait() }()
		time.Sleep(200 * time.Millisecond) // subscribed before the run

		// 32 MiB limit; dd's 128 MiB buffer cannot fit, so the guest
		// kernel kills it inside the container's cgroup.
		r := p.c.Ctr(ctx, nil, "run", "--rm", "--memory-limit", "33554432", "--runtime", p.env.ShimBinary,
			"--runtime-config-path", cfg, p.image, id, "sh", "-c", "echo before; exec dd if=/dev/zero of=/dev/null bs=128M count=1")
		if r.ExitCode != 137 {
			t.Errorf("exit code %d, want 137 (SIGKILL by the OOM killer); stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		if r.Stdout != "before\n" {
			t.Errorf("stdout %q, want the output written before the OOM kill", r.Stdout)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(evOut.String(), "/tasks/oom") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		ev := evOut.String()
		oom, exit := strings.Index(ev, "/tasks/oom"), strings.Index(ev, "/tasks/exit")
		if oom < 0 {
			t.Fatalf("no /tasks/oom event for %s; events:\n%s", id, ev)
		}
		if exit >= 0 && exit < oom {
			t.Errorf("/tasks/exit came before /tasks/oom (CRI would not report OOMKilled):\n%s", ev)
		}
		assertNoLeaks(t, id)
	})

	t.Run("kill ends a sleep", func(t *testing.T) {
		id := "podvm-kill"
		ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
		defer cancel()
		r := p.c.Ctr(ctx, nil, "run", "-d", "--runtime", p.env.ShimBinary, "--runtime-config-path", cfg, p.image, id, "sleep", "1000")
		if r.ExitCode != 0 {
			t.Fatalf("ctr run -d: exit %d, %s", r.ExitCode, r.Stderr)
		}
		if out := p.c.MustCtr(t, "task", "ls"); !strings.Contains(out, id) || !strings.Contains(out, "RUNNING") {
			t.Fatalf("task not running:\n%s", out)
		}
		p.c.MustCtr(t, "task", "kill", "--signal", "SIGKILL", id)
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := p.c.MustCtr(t, "task", "ls")
			if strings.Contains(out, "STOPPED") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task still not stopped 20s after SIGKILL:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		p.c.MustCtr(t, "task", "delete", id)
		p.c.MustCtr(t, "container", "rm", id)
		assertNoLeaks(t, id)
	})
}

func TestCtrBadInputIntegration(t *testing.T) {
	p := newPodvmCtr(t)
	dir := t.TempDir()
	good, err := os.ReadFile(p.env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	writeCfg := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	withKey := func(key, value string) string {
		var out []string
		for _, l := range strings.Split(string(good), "\n") {
			if strings.HasPrefix(l, key+" = ") {
				l = key + " = " + value
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	cases := []struct {
		name string
		cfg  string
		want []string
	}{
		{"missing kernel", writeCfg("nokernel.toml", withKey("kernel", `"/nonexistent/vmlinux"`)),
			[]string{"/nonexistent/vmlinux", "podvm image build"}},
		{"missing initramfs", writeCfg("noinitrd.toml", withKey("initrd", `"/nonexistent/initramfs.cpio"`)),
			[]string{"/nonexistent/initramfs.cpio", "podvm image build"}},
		{"missing qemu", writeCfg("noqemu.toml", withKey("path", `"/nonexistent/qemu-system-x86_64"`)),
			[]string{"/nonexistent/qemu-system-x86_64", "qemu-system-x86"}},
		{"syntax error", writeCfg("syntax.toml", "[hypervisor]\ndriver = \"qemu\"\ndefault_vcpus = = 2\n"),
			[]string{"syntax.toml:3:", "syntax error"}},
		{"unknown key", writeCfg("unknown.toml", "[hypervisor]\nkernal = \"/x\"\n"),
			[]string{"unknown.toml:2:", `unknown key "hypervisor.kernal"`}},
		{"config file missing", filepath.Join(dir, "absent.toml"),
			[]string{"absent.toml"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("podvm-bad-%d", i)
			r := p.run(t, tc.cfg, nil, id, "true")
			if r.ExitCode == 0 {
				t.Fatalf("ctr run succeeded with a broken setup")
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("error does not mention %q:\n%s", w, r.Stderr)
				}
			}
			t.Logf("ctr said: %s", strings.TrimSpace(r.Stderr))
			p.c.Ctr(context.Background(), nil, "container", "rm", id)
			assertNoLeaks(t, id)
		})
	}
}
