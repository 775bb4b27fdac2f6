package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// files writes name -> content under dir.
func files(t *testing.T, dir string, m map[string]string) {
	t.Helper()
	for name, content := range m {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mem(n string) string { return "[hypervisor]\ndefault_memory_mib = " + n + "\n" }

// TestResolvePrecedence: explicit > $PODVM_CONFIG > the operator's file >
// the install's > defaults; drop-ins in lexical order on top, only when
// the base was not named.
func TestResolvePrecedence(t *testing.T) {
	for _, tt := range []struct {
		name     string
		files    map[string]string // under a root with etc/ and prefix/
		explicit string            // relative to the root
		env      string            // relative to the root
		wantMem  uint32
		wantVCPU uint32
		want     []Origin
	}{
		{name: "nothing: defaults", wantMem: 256, wantVCPU: 1, want: []Origin{OriginDefaults}},
		{name: "install only", files: map[string]string{"prefix/" + InstalledRel: mem("300")},
			wantMem: 300, wantVCPU: 1, want: []Origin{OriginInstall}},
		{name: "operator wins over install", files: map[string]string{"prefix/" + InstalledRel: mem("300"), "etc/config.toml": mem("400")},
			wantMem: 400, wantVCPU: 1, want: []Origin{OriginOperator}},
		{name: "drop-ins in lexical order over the operator's file", files: map[string]string{
			"etc/config.toml": mem("400"), "etc/config.d/20-mem.toml": mem("600"), "etc/config.d/10-mem.toml": mem("500"),
			"etc/config.d/15-cpu.toml": "[hypervisor]\ndefault_vcpus = 2\n", "etc/config.d/README": "not toml"},
			wantMem: 600, wantVCPU: 2, want: []Origin{OriginOperator, OriginDropIn, OriginDropIn, OriginDropIn}},
		{name: "drop-ins over the install's file", files: map[string]string{"prefix/" + InstalledRel: mem("300"), "etc/config.d/a.toml": "[hypervisor]\ndefault_vcpus = 3\n"},
			wantMem: 300, wantVCPU: 3, want: []Origin{OriginInstall, OriginDropIn}},
		{name: "drop-ins over the defaults", files: map[string]string{"etc/config.d/a.toml": mem("700")},
			wantMem: 700, wantVCPU: 1, want: []Origin{OriginDefaults, OriginDropIn}},
		{name: "env wins, no drop-ins", env: "env.toml", files: map[string]string{"env.toml": mem("800"), "etc/config.toml": mem("400"), "etc/config.d/a.toml": mem("500")},
			wantMem: 800, wantVCPU: 1, want: []Origin{OriginEnv}},
		{name: "explicit wins over env", explicit: "x.toml", env: "env.toml", files: map[string]string{"x.toml": mem("900"), "env.toml": mem("800"), "etc/config.d/a.toml": mem("500")},
			wantMem: 900, wantVCPU: 1, want: []Origin{OriginExplicit}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			files(t, root, tt.files)
			etc := EtcDir
			EtcDir = filepath.Join(root, "etc")
			t.Cleanup(func() { EtcDir = etc })
			env, explicit := "", ""
			if tt.env != "" {
				env = filepath.Join(root, tt.env)
			}
			if tt.explicit != "" {
				explicit = filepath.Join(root, tt.explicit)
			}
			t.Setenv(EnvPath, env)
			e, err := Resolve(explicit, filepath.Join(root, "prefix", "bin", "containerd-shim-podvm-v2"))
			if err != nil {
				t.Fatal(err)
			}
			var got []Origin
			for _, s := range e.Sources {
				got = append(got, s.Origin)
			}
			if strings.Join(originStrings(got), ",") != strings.Join(originStrings(tt.want), ",") {
				t.Errorf("sources %v, want origins %v", e.Sources, tt.want)
			}
			if h := e.Config.Hypervisor; h.DefaultMemoryMiB != tt.wantMem || h.DefaultVCPUs != tt.wantVCPU {
				t.Errorf("default_memory_mib %d, default_vcpus %d; want %d, %d (sources %s)", h.DefaultMemoryMiB, h.DefaultVCPUs, tt.wantMem, tt.wantVCPU, e.Describe())
			}
			if base := ResolveFor(explicit, filepath.Join(root, "prefix", "bin", "x")); base != e.Base() {
				t.Errorf("ResolveFor = %s, Resolve's base %s", base, e.Base())
			}
		})
	}
}

func originStrings(o []Origin) []string {
	s := make([]string, len(o))
	for i, v := range o {
		s[i] = string(v)
	}
	return s
}

// An install that names its own etc dir is not touched by EtcDir's files.
func TestResolveInstalledEtcDir(t *testing.T) {
	root := t.TempDir()
	files(t, root, map[string]string{
		"etc/config.toml": mem("400"), "etc/config.d/a.toml": mem("500"),
		"prefix/" + InstalledRel: mem("300"), "prefix/" + InstalledEtcDirRel: filepath.Join(root, "prefix", "etc") + "\n",
		"prefix/etc/config.d/a.toml": "[hypervisor]\ndefault_vcpus = 2\n",
	})
	etc := EtcDir
	EtcDir = filepath.Join(root, "etc")
	t.Cleanup(func() { EtcDir = etc })
	t.Setenv(EnvPath, "")
	e, err := Resolve("", filepath.Join(root, "prefix", "bin", "podvm"))
	if err != nil {
		t.Fatal(err)
	}
	if h := e.Config.Hypervisor; h.DefaultMemoryMiB != 300 || h.DefaultVCPUs != 2 || len(e.Sources) != 2 {
		t.Errorf("memory %d, vcpus %d from %s; want 300 and 2 from the install and its own drop-in", h.DefaultMemoryMiB, h.DefaultVCPUs, e.Describe())
	}
}

// A drop-in may depend on the one after it: only the result is validated,
// and an invalid result names every file.
func TestResolveValidatesTheResult(t *testing.T) {
	root := t.TempDir()
	files(t, root, map[string]string{
		"etc/config.d/10.toml":  "[hypervisor]\ndriver = \"cloud-hypervisor\"\naccelerator = \"tcg\"\n",
		"etc/config.d/20.toml":  "[hypervisor]\naccelerator = \"kvm\"\n",
		"bad/config.d/10.toml":  "[hypervisor]\ndefault_vcpus = 0\n",
		"typo/config.d/10.toml": "[hypervisor]\nkernal = \"/x\"\n",
	})
	etc := EtcDir
	t.Cleanup(func() { EtcDir = etc })
	t.Setenv(EnvPath, "")
	EtcDir = filepath.Join(root, "etc")
	if _, err := Resolve("", ""); err != nil {
		t.Errorf("valid once merged: %v", err)
	}
	EtcDir = filepath.Join(root, "bad")
	if _, err := Resolve("", ""); err == nil || !strings.Contains(err.Error(), "10.toml") || !strings.Contains(err.Error(), "default_vcpus") {
		t.Errorf("invalid result: %v, want an error naming the drop-in and the key", err)
	}
	EtcDir = filepath.Join(root, "typo")
	if _, err := Resolve("", ""); err == nil || !strings.Contains(err.Error(), "10.toml:2:1") {
		t.Errorf("unknown key in a drop-in: %v, want its position", err)
	}
	if _, err := Resolve(filepath.Join(root, "absent.toml"), ""); err == nil || !strings.Contains(err.Error(), "absent.toml") {
		t.Errorf("a missing explicit file: %v, want an error naming it", err)
	}
}
