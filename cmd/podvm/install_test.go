package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

// vhost-device-vsock and virtiofsd are shipped in libexec/podvm only when
// given by flag: vhost-device-vsock on PATH is not picked up (hybrid vsock
// is opt-in), and its absence is said.
func TestInstallHelpers(t *testing.T) {
	dir := t.TempDir()
	vsockd, fsd := filepath.Join(dir, "vhost-device-vsock"), filepath.Join(dir, "virtiofsd")
	for _, p := range []string{vsockd, fsd} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	for _, tt := range []struct {
		name    string
		h       helpers
		shipped []string
	}{
		{"flags", helpers{vsockd: vsockd, virtiofsd: fsd}, []string{"libexec/podvm/vhost-device-vsock", virtiofsd.InstalledRel}},
		{"virtiofsd only", helpers{virtiofsd: fsd}, []string{virtiofsd.InstalledRel}},
		{"none, PATH has both", helpers{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefix := t.TempDir()
			var out bytes.Buffer
			if err := tt.h.install(prefix, &out); err != nil {
				t.Fatal(err)
			}
			for _, rel := range []string{"libexec/podvm/vhost-device-vsock", virtiofsd.InstalledRel} {
				st, err := os.Stat(filepath.Join(prefix, rel))
				want := strings.Contains(strings.Join(tt.shipped, " "), rel)
				if want && (err != nil || st.Mode().Perm() != 0o755) {
					t.Errorf("%s not shipped: %v", rel, err)
				}
				if !want && err == nil {
					t.Errorf("%s shipped without its flag", rel)
				}
			}
			if said := strings.Contains(out.String(), "virtio-serial"); said != (tt.h.vsockd == "") {
				t.Errorf("output %q: saying virtio-serial is %v, want %v", out.String(), said, tt.h.vsockd == "")
			}
		})
	}
	if err := (helpers{vsockd: vsockd + ".gone"}).install(t.TempDir(), &bytes.Buffer{}); err == nil {
		t.Error("a missing --vhost-device-vsock was accepted")
	}
	if err := (helpers{virtiofsd: fsd + ".gone"}).install(t.TempDir(), &bytes.Buffer{}); err == nil {
		t.Error("a missing --virtiofsd was accepted")
	}
}

// install says which file the shim will use and that the operator's is
// never written.
func TestInstallNamesTheOperatorConfig(t *testing.T) {
	etc := t.TempDir()
	var out bytes.Buffer
	printOperatorConfig(&out, etc, "/p/share/podvm/config.toml")
	if s := out.String(); !strings.Contains(s, "uses the shipped /p/share/podvm/config.toml") || !strings.Contains(s, filepath.Join(etc, "config.toml")) ||
		!strings.Contains(s, "no install overwrites those") {
		t.Errorf("without an operator file:\n%s", s)
	}
	if err := os.WriteFile(filepath.Join(etc, "config.toml"), []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	printOperatorConfig(&out, etc, "/p/share/podvm/config.toml")
	if s := out.String(); !strings.Contains(s, "was left as it is: it wins over the shipped") {
		t.Errorf("with an operator file:\n%s", s)
	}
}

// Each handler's shipped configuration parses and differs from config.toml
// as its handler needs: the cache's has a state_dir of its own, so its
// pool is never another handler's.
func TestConfigVariants(t *testing.T) {
	base, err := config.ForPrefix(config.DefaultTOML(), "/p")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]func(*config.Config) bool{
		"config-clh.toml": func(c *config.Config) bool { return c.Hypervisor.Driver == "cloud-hypervisor" },
		"config-template.toml": func(c *config.Config) bool {
			return c.Factory.Mode == config.FactoryTemplate && c.Hypervisor.SharedFS == "9p"
		},
		"config-cache.toml": func(c *config.Config) bool {
			return c.Factory.Mode == config.FactoryCache && c.Runtime.StateDir == cacheStateDir && c.Runtime.StateDir != "/run/podvm"
		},
	}
	for _, v := range configVariants {
		text, err := v.of(base, "/p/share/podvm/"+v.file)
		if err != nil {
			t.Fatalf("%s: %v", v.file, err)
		}
		c, err := config.Parse(text, v.file)
		if err != nil {
			t.Fatalf("%s: %v", v.file, err)
		}
		if check, ok := want[v.file]; !ok || !check(c) {
			t.Errorf("%s: mode %q, state_dir %q, driver %q, shared_fs %q", v.file, c.Factory.Mode, c.Runtime.StateDir, c.Hypervisor.Driver, c.Hypervisor.SharedFS)
		}
	}
}
