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

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/sandbox"
)

// badInput runs containers from hostile OCI specs through the real
// containerd, shim and VM: with ctr's flags, and with whole specs (ctr run
// --config) for what no flag produces.
type badInput struct {
	*podvmCtr
	t      *testing.T
	dir    string
	rootfs string // a busybox root for --config specs
	base   specs.Spec
}

func newBadInput(t *testing.T) *badInput {
	p := newPodvmCtr(t)
	b := &badInput{podvmCtr: p, t: t, dir: t.TempDir()}
	b.rootfs = filepath.Join(b.dir, "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc", "run"} {
		if err := os.MkdirAll(filepath.Join(b.rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec.Command("cp", p.env.BusyboxPath, filepath.Join(b.rootfs, "bin", "busybox")).Run(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "echo", "test", "ls", "nproc", "grep", "head"} {
		os.Symlink("busybox", filepath.Join(b.rootfs, "bin", a))
	}
	out, err := exec.Command(p.env.Ctr, "oci", "spec").Output()
	if err != nil {
		t.Fatalf("ctr oci spec: %v", err)
	}
	if err := json.Unmarshal(out, &b.base); err != nil {
		t.Fatal(err)
	}
	b.base.Root = &specs.Root{Path: b.rootfs}
	b.base.Process.Env = []string{"PATH=/bin"}
	return b
}

// flags runs `ctr run --rm` of the busybox image with extra flags.
func (b *badInput) flags(cfg, id string, flags []string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
	defer cancel()
	full := append([]string{"run", "--rm", "--runtime", b.env.ShimBinary, "--runtime-config-path", cfg}, flags...)
	full = append(append(full, b.image, id), args...)
	return b.c.Ctr(ctx, nil, full...)
}

// spec runs `ctr run --rm --config` of the base spec as edit leaves it.
func (b *badInput) spec(cfg, id string, edit func(*specs.Spec)) cmdResult {
	s := b.base // shallow: edit replaces what it changes
	proc := *b.base.Process
	s.Process = &proc
	edit(&s)
	data, err := json.Marshal(&s)
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(b.dir, id+".json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ctrRunTimeout)
	defer cancel()
	return b.c.Ctr(ctx, nil, "run", "--rm", "--config", path, "--runtime", b.env.ShimBinary, "--runtime-config-path", cfg, id)
}

// refused checks that a run failed and that its error says why.
func refused(t *testing.T, r cmdResult, why ...string) {
	t.Helper()
	if r.ExitCode == 0 {
		t.Fatalf("accepted: stdout %q", r.Stdout)
	}
	for _, w := range why {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("the error does not say %q:\n%s", w, r.Stderr)
		}
	}
	t.Logf("refused in %s: %s", r.Duration.Round(1e6), lastLine(r.Stderr))
}

// ran checks that a run succeeded and returns its stdout.
func ran(t *testing.T, r cmdResult) string {
	t.Helper()
	if r.ExitCode != 0 {
		t.Fatalf("exit %d: %s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// cleanAfter removes the container if ctr left it and checks for leaks.
func (b *badInput) cleanAfter(t *testing.T, id string) {
	b.c.Ctr(context.Background(), nil, "container", "rm", id)
	assertNoLeaks(t, id)
}

// TestBadInputSpecIntegration: OCI specs with absurd or hostile values are
// refused with a reason or made harmless, and leave nothing behind.
func TestBadInputSpecIntegration(t *testing.T) {
	b := newBadInput(t)
	cfg := b.env.ConfigPath
	host, err := sandbox.ThisHost()
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	cases := []struct {
		name  string
		run   func(id string) cmdResult
		check func(t *testing.T, r cmdResult)
	}{
		{"memory beyond the host", func(id string) cmdResult {
			return b.flags(cfg, id, []string{"--memory-limit", fmt.Sprint(2 * host.MemoryMiB << 20)}, "true")
		}, func(t *testing.T, r cmdResult) { refused(t, r, "more than this host's") }},
		{"memory that would wrap to a small VM", func(id string) cmdResult {
			return b.flags(cfg, id, []string{"--memory-limit", fmt.Sprint(uint64(1<<52 + 1<<20))}, "true")
		}, func(t *testing.T, r cmdResult) { refused(t, r, "no VM can have more than") }},
		{"more CPUs than the host", func(id string) cmdResult {
			return b.flags(cfg, id, []string{"--cpus", "64"}, "grep", "-c", "^processor", "/proc/cpuinfo")
		}, func(t *testing.T, r cmdResult) {
			if got := ran(t, r); got != fmt.Sprint(min(host.CPUs, 255)) {
				t.Errorf("the guest has %s CPUs; want the host's %d", got, host.CPUs)
			}
		}},
		{"negative memory limit", func(id string) cmdResult {
			return b.spec(cfg, id, func(s *specs.Spec) {
				s.Process.Args = []string{"echo", "ok"}
				l := *s.Linux
				l.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-12345)}, Pids: &specs.LinuxPids{Limit: i64(-7)}}
				s.Linux = &l
			})
		}, func(t *testing.T, r cmdResult) {
			// OCI: a negative limit is none. Either the guest's runc
			// runs it so, or refuses it; never a broken VM.
			t.Logf("negative limits: exit %d, %q %s", r.ExitCode, r.Stdout, lastLine(r.Stderr))
			if r.ExitCode == 0 && strings.TrimSpace(r.Stdout) != "ok" {
				t.Errorf("ran, but printed %q", r.Stdout)
			}
		}},
		{"host devices are not passed", func(id string) cmdResult {
			return b.flags(cfg, id, []string{"--device", "/dev/kmsg", "--device", "/dev/loop-control"},
				"sh", "-c", "test -e /dev/kmsg || test -e /dev/loop-control && echo present || echo absent")
		}, func(t *testing.T, r cmdResult) {
			if got := ran(t, r); got != "absent" {
				t.Errorf("host devices in the container: %q", got)
			}
		}},
		{"mount destination climbing out of the root", func(id string) cmdResult {
			src := filepath.Join(b.dir, "vol")
			os.MkdirAll(src, 0o755)
			os.WriteFile(filepath.Join(src, "f"), []byte("inside\n"), 0o644)
			return b.flags(cfg, id, []string{"--mount", "type=bind,src=" + src + ",dst=/../../../../climbed,options=rbind:ro"}, "cat", "/climbed/f")
		}, func(t *testing.T, r cmdResult) {
			// runc resolves the destination inside the container's root.
			if got := ran(t, r); got != "inside" {
				t.Errorf("got %q", got)
			}
		}},
		{"spec without a process", func(id string) cmdResult {
			return b.spec(cfg, id, func(s *specs.Spec) { s.Process = nil })
		}, func(t *testing.T, r cmdResult) { refused(t, r, "has no process") }},
		{"spec larger than the agent channel carries", func(id string) cmdResult {
			return b.spec(cfg, id, func(s *specs.Spec) {
				s.Process.Args = []string{"true"}
				s.Process.Env = append(s.Process.Env, "HUGE="+strings.Repeat("x", 5<<20))
			})
		}, func(t *testing.T, r cmdResult) { refused(t, r, "exceed") }},
		{"a root given by path", func(id string) cmdResult {
			return b.spec(cfg, id, func(s *specs.Spec) { s.Process.Args = []string{"cat", "/etc/marker"} })
		}, func(t *testing.T, r cmdResult) {
			if got := ran(t, r); got != "host-rootfs" {
				t.Errorf("got %q", got)
			}
		}},
	}
	os.WriteFile(filepath.Join(b.rootfs, "etc", "marker"), []byte("host-rootfs\n"), 0o644)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("podvm-badspec-%d", i)
			tc.check(t, tc.run(id))
			b.cleanAfter(t, id)
		})
	}
}

// TestBadInputAnnotationsIntegration: annotations that would change the
// kernel, image, VMM or its arguments are refused unless the node's config
// allows them; other annotations are left alone.
func TestBadInputAnnotationsIntegration(t *testing.T) {
	b := newBadInput(t)
	good, err := os.ReadFile(b.env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	allowing := filepath.Join(b.dir, "allowing.toml")
	text := withConfigKey(string(good), "enable_annotations", `["hypervisor.default_memory_mib", "hypervisor.kernel"]`)
	text = withConfigKey(text, "valid_annotation_paths", `["/opt/podvm-approved/*"]`)
	if err := os.WriteFile(allowing, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ann := func(kv string) []string { return []string{"--annotation", kv} }
	cases := []struct {
		name  string
		cfg   string
		flags []string
		args  []string
		check func(t *testing.T, r cmdResult)
	}{
		{"unknown annotation of someone else is ignored", b.env.ConfigPath, ann("example.com/owner=team-a"), []string{"true"},
			func(t *testing.T, r cmdResult) { ran(t, r) }},
		{"kernel by annotation refused by default", b.env.ConfigPath, ann("io.podvm.config.hypervisor.kernel=/tmp/evil-vmlinux"), []string{"true"},
			func(t *testing.T, r cmdResult) {
				refused(t, r, "io.podvm.config.hypervisor.kernel", "not allowed on this node", "runtime.enable_annotations")
			}},
		{"VMM path by annotation refused", b.env.ConfigPath, ann("io.podvm.config.hypervisor.qemu.path=/bin/sh"), []string{"true"},
			func(t *testing.T, r cmdResult) { refused(t, r, "not allowed on this node") }},
		{"kernel parameters by annotation refused", b.env.ConfigPath, ann("io.podvm.config.hypervisor.kernel_params=init=/bin/sh"), []string{"true"},
			func(t *testing.T, r cmdResult) { refused(t, r, "not allowed on this node") }},
		{"unknown podvm key refused", b.env.ConfigPath, ann("io.podvm.config.hypervisor.kernal=/x"), []string{"true"},
			func(t *testing.T, r cmdResult) { refused(t, r, "podvm has no such key") }},
		{"allowed key applied", allowing, ann("io.podvm.config.hypervisor.default_memory_mib=512"), []string{"head", "-1", "/proc/meminfo"},
			func(t *testing.T, r cmdResult) {
				var kib int
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(ran(t, r), "MemTotal:")), "%d", &kib)
				if kib < 400<<10 || kib > 512<<10 {
					t.Errorf("guest MemTotal %d KiB with default_memory_mib=512 by annotation", kib)
				}
			}},
		{"allowed key out of range refused", allowing, ann("io.podvm.config.hypervisor.default_memory_mib=-1"), []string{"true"},
			func(t *testing.T, r cmdResult) { refused(t, r, "want a whole number") }},
		{"allowed path key outside the valid paths refused", allowing, ann("io.podvm.config.hypervisor.kernel=/tmp/evil-vmlinux"), []string{"true"},
			func(t *testing.T, r cmdResult) { refused(t, r, "matches none of runtime.valid_annotation_paths") }},
		{"allowed path key climbing out refused", allowing, ann("io.podvm.config.hypervisor.kernel=/opt/podvm-approved/../../tmp/evil"), []string{"true"},
			func(t *testing.T, r cmdResult) { refused(t, r, "not a clean absolute path") }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("podvm-badann-%d", i)
			tc.check(t, b.flags(tc.cfg, id, tc.flags, tc.args...))
			b.cleanAfter(t, id)
		})
	}
}
