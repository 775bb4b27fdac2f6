package config

import (
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestForPrefix(t *testing.T) {
	for _, tc := range []struct {
		name, shipped, prefix string
		wantKernel            string
		wantErr               string
	}{
		{name: "shipped defaults", shipped: string(DefaultTOML()), prefix: "/usr/local/podvm",
			wantKernel: "/usr/local/podvm/share/podvm/vmlinux"},
		{name: "prefix cleaned", shipped: string(DefaultTOML()), prefix: "/srv/podvm/",
			wantKernel: "/srv/podvm/share/podvm/vmlinux"},
		{name: "shipped prefix keeps the text", shipped: string(DefaultTOML()), prefix: ShippedPrefix,
			wantKernel: "/opt/podvm/share/podvm/vmlinux"},
		{name: "another shipped file", shipped: "[hypervisor]\nkernel = \"/opt/podvm/k\"\n", prefix: "/p",
			wantKernel: "/p/k"},
		{name: "invalid shipped file", shipped: "[hypervisor]\ndriver = \"xen\"\n", prefix: "/p",
			wantErr: "the configuration for prefix /p is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ForPrefix([]byte(tc.shipped), tc.prefix)
			c := parseResult(t, out, err, tc.wantErr)
			if c == nil {
				return
			}
			if c.Hypervisor.Kernel != tc.wantKernel {
				t.Errorf("kernel = %q, want %q", c.Hypervisor.Kernel, tc.wantKernel)
			}
			if tc.prefix != ShippedPrefix && strings.Contains(string(out), `"`+ShippedPrefix+`/`) {
				t.Errorf("a path still names %s:\n%s", ShippedPrefix, out)
			}
		})
	}
}

// parseResult checks a rewrite's error against wantErr ("": none) and
// parses what it wrote; nil when an error was wanted.
func parseResult(t *testing.T, out []byte, err error, wantErr string) *Config {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(out, "out")
	if err != nil {
		t.Fatalf("the rewritten config does not parse: %v\n%s", err, out)
	}
	return c
}

func TestWithStateDir(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
		wantMemoryMiB     uint32
	}{
		{name: "shipped defaults", in: string(DefaultTOML()), wantMemoryMiB: 256},
		{name: "no runtime table", in: "[hypervisor]\ndefault_memory_mib = 512\n", wantMemoryMiB: 512},
		{name: "empty file", in: "", wantMemoryMiB: 256},
		{name: "not TOML", in: "[runtime", wantErr: "podvm config"},
		{name: "invalid value", in: "[hypervisor]\ndriver = \"xen\"\n", wantErr: "driver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := WithStateDir([]byte(tc.in), "/run/bench/podvm")
			c := parseResult(t, out, err, tc.wantErr)
			if c == nil {
				return
			}
			if c.Runtime.StateDir != "/run/bench/podvm" {
				t.Errorf("state_dir = %q", c.Runtime.StateDir)
			}
			if c.Hypervisor.DefaultMemoryMiB != tc.wantMemoryMiB {
				t.Errorf("other keys lost:\n%s", out)
			}
		})
	}
}

func TestHandlerTOML(t *testing.T) {
	const shim = "/opt/podvm/bin/containerd-shim-podvm-v2"
	for _, tc := range []struct {
		name       string
		h          Handler
		wantPlugin string
		wantOption string // "": no options table
	}{
		{name: "no config", h: Handler{Name: "podvm", Shim: shim},
			wantPlugin: CRIRuntimePlugin},
		{name: "the install's config", h: Handler{Name: "podvm", Shim: shim, ConfigPath: "/opt/podvm/share/podvm/config.toml"},
			wantPlugin: CRIRuntimePlugin},
		{name: "another config", h: Handler{Name: "podvm-clh", Shim: shim, ConfigPath: "/opt/podvm/share/podvm/config-clh.toml"},
			wantPlugin: CRIRuntimePlugin, wantOption: "/opt/podvm/share/podvm/config-clh.toml"},
		{name: "containerd 1.7", h: Handler{Name: "podvm", Shim: shim, Plugin: CRIPluginV2},
			wantPlugin: CRIPluginV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.h.TOML()
			var doc struct {
				Plugins map[string]struct {
					Containerd struct {
						Runtimes map[string]struct {
							RuntimeType string `toml:"runtime_type"`
							RuntimePath string `toml:"runtime_path"`
							Options     *struct{ ConfigPath string }
						}
					}
				}
			}
			if err := toml.Unmarshal([]byte(text), &doc); err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			rt, ok := doc.Plugins[tc.wantPlugin].Containerd.Runtimes[tc.h.Name]
			if !ok || rt.RuntimeType != "io.containerd.podvm.v2" || rt.RuntimePath != shim {
				t.Fatalf("handler %q not in plugin %q as podvm's shim:\n%s", tc.h.Name, tc.wantPlugin, text)
			}
			switch {
			case tc.wantOption == "" && rt.Options != nil:
				t.Errorf("options %+v, want none:\n%s", rt.Options, text)
			case tc.wantOption == "" && !strings.Contains(text, "the shim reads /opt/podvm/share/podvm/config.toml"):
				t.Errorf("no comment naming the config the shim reads:\n%s", text)
			case tc.wantOption != "" && (rt.Options == nil || rt.Options.ConfigPath != tc.wantOption):
				t.Errorf("options %+v, want ConfigPath %q:\n%s", rt.Options, tc.wantOption, text)
			}
		})
	}
}
