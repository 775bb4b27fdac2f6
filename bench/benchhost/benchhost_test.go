package benchhost

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/internal/hostbed"
	"github.com/podvm/podvm/runtime/config"
)

func TestContainerdConfig(t *testing.T) {
	tools := &Tools{Shim: "/p/bin/containerd-shim-podvm-v2", Runc: "/c/runc", CNIBinDir: "/usr/lib/cni"}
	n := &hostbed.BridgeNetwork{ConfDir: "/w/cni/net.d", BinDir: "/usr/lib/cni"}
	for _, tc := range []struct {
		name     string
		runsc    string
		handlers []string
	}{
		{"without gVisor", "", []string{"podvm", "podvm-template", "runc"}},
		// gVisor runs through ctr only.
		{"with gVisor", "/c/runsc", []string{"podvm", "podvm-template", "runc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tools.Runsc = tc.runsc
			rendered, err := stackOptions("/w", tools, []hostbed.Handler{
				hostbed.PodvmHandler("podvm", tools.Shim, "/w/podvm.toml"),
				hostbed.PodvmHandler("podvm-template", tools.Shim, "/w/podvm-template.toml"),
			}, nil, false).Config("/w/certs.d", n)
			if err != nil {
				t.Fatal(err)
			}
			text := rendered.Render()
			if !strings.Contains(text, `sandbox = "registry.k8s.io/pause:3.10.2"`) {
				t.Errorf("sandbox image not pinned:\n%s", text)
			}
			var cfg struct {
				Version int    `toml:"version"`
				Root    string `toml:"root"`
				Plugins map[string]struct {
					RestrictOOM bool `toml:"restrict_oom_score_adj"`
					Containerd  struct {
						Default  string `toml:"default_runtime_name"`
						Runtimes map[string]struct {
							Type    string         `toml:"runtime_type"`
							Path    string         `toml:"runtime_path"`
							Options map[string]any `toml:"options"`
						} `toml:"runtimes"`
					} `toml:"containerd"`
				} `toml:"plugins"`
			}
			if err := toml.Unmarshal([]byte(text), &cfg); err != nil {
				t.Fatalf("not TOML: %v\n%s", err, text)
			}
			rt := cfg.Plugins["io.containerd.cri.v1.runtime"]
			if cfg.Version != 4 || cfg.Root != "/w/root" || !rt.RestrictOOM || rt.Containerd.Default != "runc" {
				t.Errorf("config %+v", cfg)
			}
			var got []string
			for h := range rt.Containerd.Runtimes {
				got = append(got, h)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.handlers, ",") {
				t.Errorf("handlers %v, want %v", got, tc.handlers)
			}
			podvm := rt.Containerd.Runtimes["podvm"]
			if podvm.Type != "io.containerd.podvm.v2" || podvm.Path != tools.Shim || podvm.Options["ConfigPath"] != "/w/podvm.toml" {
				t.Errorf("podvm handler %+v", podvm)
			}
			if tpl := rt.Containerd.Runtimes["podvm-template"]; tpl.Path != tools.Shim || tpl.Options["ConfigPath"] != "/w/podvm-template.toml" {
				t.Errorf("podvm-template handler %+v", tpl)
			}
			if runc := rt.Containerd.Runtimes["runc"]; runc.Options["BinaryName"] != tools.Runc || runc.Options["Root"] != "/w/runc" {
				t.Errorf("runc handler %+v", runc)
			}
		})
	}
}

// TestStateDirConfig checks that the shipped configuration, given the
// benchmark's StateDir, keeps everything else.
func TestStateDirConfig(t *testing.T) {
	installed := config.DefaultTOML()
	out, err := config.WithStateDir(installed, StateDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(out, "rewritten")
	if err != nil {
		t.Fatal(err)
	}
	def, _ := config.Parse(installed, "default")
	if cfg.Runtime.StateDir != StateDir {
		t.Errorf("state_dir %q", cfg.Runtime.StateDir)
	}
	// Everything else is kept.
	cfg.Runtime.StateDir = def.Runtime.StateDir
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("rewriting changed more than state_dir:\n%+v\n%+v", cfg, def)
	}
	if _, err := config.WithStateDir([]byte("not toml ["), StateDir); err == nil {
		t.Error("no error for a broken config")
	}
}

func TestArgValue(t *testing.T) {
	args := []string{"containerd-shim-podvm-v2", "-namespace", "k8s.io", "-id", "abc", "-address", "/w/c.sock"}
	for flag, want := range map[string]string{"-id": "abc", "-address": "/w/c.sock", "-debug": "", "/w/c.sock": ""} {
		if got := argValue(args, flag); got != want {
			t.Errorf("argValue(%s) = %q, want %q", flag, got, want)
		}
	}
}

func TestRuntimeName(t *testing.T) {
	for h, want := range map[string]string{"runc": "runc", "podvm": "podvm", "runsc": "runsc (gVisor)"} {
		if got := RuntimeName(h); got != want {
			t.Errorf("RuntimeName(%s) = %q", h, got)
		}
	}
}
