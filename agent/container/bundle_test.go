package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCheckID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"pod_1.app-2+x", true},
		{"", false},
		{".", false},
		{"..", false},
		{"-flag", false},
		{"a/b", false},
		{"a b", false},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a", 128), true},
		{"_x", false},
		{"a\n", false},
		{"caf\u00e9", false},
		{"x\x00", false},
	}
	for _, tt := range tests {
		err := checkID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("checkID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("checkID(%q) error %v is not InvalidArgument", tt.id, err)
		}
	}
}

// TestValidIDMatchesRuncPattern compares validID with the pattern it
// replaces, on every string of up to 3 bytes from an alphabet with each
// class of character, and on lengths around the cap.
func TestValidIDMatchesRuncPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)
	alphabet := []string{"a", "Z", "0", "_", ".", "+", "-", "/", " ", "\xff", "~"}
	ids := []string{""}
	for n := 0; n < 3; n++ {
		var next []string
		for _, p := range ids {
			for _, c := range alphabet {
				next = append(next, p+c)
			}
		}
		ids = append(ids, next...)
	}
	for _, n := range []int{127, 128, 129} {
		ids = append(ids, strings.Repeat("b", n), "a"+strings.Repeat("-", n-1))
	}
	for _, id := range ids {
		if got, want := validID(id), pattern.MatchString(id); got != want {
			t.Errorf("validID(%q) = %v, the pattern says %v", id, got, want)
		}
	}
}

func TestGuestSpecCgroupsPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "/podvm/c1"},
		{"systemd", "kubepods-besteffort.slice:cri-containerd:c1", "/podvm/c1"},
		{"cgroupfs", "/kubepods/besteffort/podX/c1", "/kubepods/besteffort/podX/c1"},
		{"relative", "mygroup", "mygroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := mustJSON(t, &specs.Spec{
				Process: &specs.Process{Args: []string{"true"}},
				Root:    &specs.Root{Path: "/rootfs"},
				Linux:   &specs.Linux{CgroupsPath: tt.in},
			})
			spec, err := guestSpec("c1", raw, false)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Linux.CgroupsPath != tt.want {
				t.Errorf("cgroupsPath = %q, want %q", spec.Linux.CgroupsPath, tt.want)
			}
		})
	}
}

func TestGuestSpecTerminalFollowsRequest(t *testing.T) {
	raw := mustJSON(t, &specs.Spec{Process: &specs.Process{Terminal: true}, Root: &specs.Root{Path: "/r"}})
	spec, err := guestSpec("c1", raw, false)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Process.Terminal || spec.Linux == nil {
		t.Fatalf("terminal %v linux %v: want false and a Linux section", spec.Process.Terminal, spec.Linux)
	}
}

func TestGuestSpecRejects(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"not json", "{"},
		{"no process", `{"root":{"path":"/r"}}`},
		{"no root", `{"process":{"args":["true"]}}`},
		{"empty root", `{"process":{"args":["true"]},"root":{"path":""}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := guestSpec("c1", []byte(tt.raw), false)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "c1") {
				t.Fatalf("error %v: want InvalidArgument naming the container", err)
			}
		})
	}
}

func TestCheckRoot(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		root  string
		check func(error) bool
	}{
		{"exists", dir, func(err error) bool { return err == nil }},
		{"relative to bundle", ".", func(err error) bool { return err == nil }},
		{"missing", filepath.Join(dir, "missing"), errdefs.IsFailedPrecondition},
		{"not a directory", file, errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkRoot(dir, "c1", tt.root); !tt.check(err) {
				t.Fatalf("checkRoot(%q) = %v", tt.root, err)
			}
		})
	}
}

func TestLastRuncError(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log.json")
	lines := `{"level":"warning","msg":"ignored","time":"t"}
{"level":"error","msg":"first","time":"t"}
not json
{"level":"error","msg":"runc create failed: unable to start container process","time":"t"}
{"level":"info","msg":"after","time":"t"}
`
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := lastRuncError(log); got != "runc create failed: unable to start container process" {
		t.Fatalf("lastRuncError = %q", got)
	}
	if got := lastRuncError(filepath.Join(t.TempDir(), "none")); got != "" {
		t.Fatalf("lastRuncError of a missing file = %q", got)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyNetSysctls(t *testing.T) {
	procSys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(procSys, "net", "ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "0",
		"kernel.shm_rmid_forced":              "1",
	}}}
	if err := applyNetSysctls("c1", spec, procSys); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(procSys, "net", "ipv4", "ip_unprivileged_port_start"))
	if err != nil || string(got) != "0" {
		t.Errorf("net sysctl written as %q (%v), want \"0\"", got, err)
	}
	if _, ok := spec.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"]; ok {
		t.Error("the applied net sysctl must leave the spec, or runc refuses it")
	}
	if spec.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
		t.Error("non-network sysctls stay in the spec for runc (it applies them in the container's IPC namespace)")
	}
}
