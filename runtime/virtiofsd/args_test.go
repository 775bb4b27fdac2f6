package virtiofsd

import (
	"reflect"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	hardened := []string{"--seccomp=kill", "--inode-file-handles=never", "--modcaps=-mknod:-fsetid:-setfcap", "--rlimit-nofile=0"}
	tests := []struct {
		name    string
		flavor  Flavor
		cfg     Config
		sandbox Sandbox
		want    []string
	}{
		{"C default cache", FlavorC, Config{SharedDir: "/s"}, SandboxChroot,
			[]string{"--fd=3", "-o", "source=/s", "-o", "cache=auto", "-o", "sandbox=chroot", "-o", "announce_submounts"}},
		{"C never means none, extra args", FlavorC, Config{SharedDir: "/s", Cache: "never", ExtraArgs: []string{"-o", "xattr"}}, SandboxChroot,
			[]string{"--fd=3", "-o", "source=/s", "-o", "cache=none", "-o", "sandbox=chroot", "-o", "announce_submounts", "-o", "xattr"}},
		{"C keeps chroot whatever is asked", FlavorC, Config{SharedDir: "/s"}, SandboxNamespace,
			[]string{"--fd=3", "-o", "source=/s", "-o", "cache=auto", "-o", "sandbox=chroot", "-o", "announce_submounts"}},
		{"Rust none means never, hardened", FlavorRust, Config{SharedDir: "/s", Cache: "none"}, SandboxChroot,
			append([]string{"--fd=3", "--shared-dir=/s", "--cache=never", "--sandbox=chroot", "--announce-submounts"}, hardened...)},
		{"Rust namespace sandbox, extra args last", FlavorRust, Config{SharedDir: "/s", ExtraArgs: []string{"--xattr"}}, SandboxNamespace,
			append(append([]string{"--fd=3", "--shared-dir=/s", "--cache=auto", "--sandbox=namespace", "--announce-submounts"}, hardened...), "--xattr")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.flavor, tt.cfg, tt.sandbox, 3)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Args =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

// The Rust daemon never gets --tag (QEMU 7.1 to 8.0 crash on the config
// feature it enables) and never keeps the capabilities hole 5 is about.
func TestArgsRustNeverTagAndDropsDeviceCaps(t *testing.T) {
	got, err := Args(FlavorRust, Config{SharedDir: "/s"}, SandboxNamespace, 3)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(got, " ")
	if strings.Contains(line, "--tag") {
		t.Errorf("--tag passed: %s", line)
	}
	for _, cap := range []string{"-mknod", "-fsetid", "-setfcap"} {
		if !strings.Contains(line, "--modcaps=") || !strings.Contains(line, cap) {
			t.Errorf("capability %s not dropped: %s", cap, line)
		}
	}
}

func TestArgsErrors(t *testing.T) {
	if _, err := Args(FlavorC, Config{SharedDir: "/s", Cache: "sometimes"}, SandboxChroot, 3); err == nil {
		t.Error("bad cache mode accepted")
	}
	if _, err := Args(FlavorC, Config{}, SandboxChroot, 3); err == nil {
		t.Error("empty shared dir accepted")
	}
	if _, err := Args(FlavorRust, Config{SharedDir: "/s"}, "none", 3); err == nil {
		t.Error("sandbox none accepted")
	}
}
