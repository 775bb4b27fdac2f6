package container

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestFixRuntimeLayout runs in a child test process, since the flag stays
// on every thread of the process that sets it: children then start with
// ADDR_NO_RANDOMIZE (00040000 in /proc/<pid>/personality).
func TestFixRuntimeLayout(t *testing.T) {
	if os.Getenv("PODVM_TEST_FIX_LAYOUT") == "1" {
		if err := fixRuntimeLayout(); errors.Is(err, syscall.ENOTSUP) {
			t.Skip("a cgo build cannot set it on every thread; the agent is built with CGO_ENABLED=0")
		} else if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("cat", "/proc/self/personality").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "00040000" {
			t.Fatalf("a child's personality %s, want 00040000 (ADDR_NO_RANDOMIZE)", got)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFixRuntimeLayout$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PODVM_TEST_FIX_LAYOUT=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "SKIP") {
		t.Skipf("child: %s", out)
	}
}

// TestCrunSpecGetsPersonality: crun's config has a personality, the
// default unless the spec asks for one, so that crun gives the container's
// processes back the randomization the agent took from crun; runc's is left
// as it came.
func TestCrunSpecGetsPersonality(t *testing.T) {
	for _, tc := range []struct {
		runtime string
		in      *specs.LinuxPersonality
		want    *specs.LinuxPersonality
	}{
		{"crun", nil, &specs.LinuxPersonality{Domain: specs.PerLinux}},
		{"crun", &specs.LinuxPersonality{Domain: specs.PerLinux32}, &specs.LinuxPersonality{Domain: specs.PerLinux32}},
		{"runc", nil, nil},
	} {
		rt, err := runtimeFor(GuestConfig, tc.runtime)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		raw := mustJSON(t, &specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Root: &specs.Root{Path: "rootfs"},
			Linux: &specs.Linux{Personality: tc.in}})
		spec, err := writeBundle(dir, "c1", raw, bundleOptions{personality: rt.personality})
		if err != nil {
			t.Fatal(err)
		}
		got := spec.Linux.Personality
		if (got == nil) != (tc.want == nil) || (got != nil && got.Domain != tc.want.Domain) {
			t.Errorf("%s, spec personality %+v: config has %+v, want %+v", tc.runtime, tc.in, got, tc.want)
		}
	}
}
