package hostbed

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// base is what every rendered configuration holds for Dir /w and Address
// /w/c.sock.
func base() map[string]any {
	return map[string]any{
		"version": int64(4),
		"root":    "/w/root",
		"state":   "/w/state",
		"plugins": map[string]any{
			"io.containerd.server.v1.grpc":  map[string]any{"address": "/w/c.sock"},
			"io.containerd.server.v1.ttrpc": map[string]any{"address": "/w/c.sock.ttrpc"},
			"io.containerd.server.v1.debug": map[string]any{"address": "/w/debug.sock"},
			"io.containerd.internal.v1.opt": map[string]any{"path": "/w/opt"},
		},
	}
}

// withCRI adds the CRI plugin's tables with runtimes to m.
func withCRI(m map[string]any, runtimes map[string]any) map[string]any {
	p := m["plugins"].(map[string]any)
	p["io.containerd.grpc.v1.cri"] = map[string]any{"stream_server_address": "127.0.0.1", "stream_server_port": "0"}
	p["io.containerd.cri.v1.images"] = map[string]any{
		"pinned_images": map[string]any{"sandbox": "registry.k8s.io/pause:3.10.2"},
		"registry":      map[string]any{"config_path": "/w/certs.d"},
	}
	p["io.containerd.cri.v1.runtime"] = map[string]any{
		"restrict_oom_score_adj":       true,
		"netns_mounts_under_state_dir": true,
		"cni":                          map[string]any{"bin_dirs": []any{"/usr/lib/cni"}, "conf_dir": "/w/cni/net.d"},
		"containerd":                   map[string]any{"default_runtime_name": "runc", "runtimes": runtimes},
	}
	return m
}

func runcRuntime(binary, root string) map[string]any {
	opts := map[string]any{"BinaryName": binary, "SystemdCgroup": false}
	if root != "" {
		opts["Root"] = root
	}
	return map[string]any{"runtime_type": "io.containerd.runc.v2", "options": opts}
}

// podvmRuntime is the podvm handler with a config of its own (not its
// install's), as the benchmarks give it.
func podvmRuntime() map[string]any {
	return map[string]any{"runtime_type": "io.containerd.podvm.v2", "runtime_path": "/p/bin/containerd-shim-podvm-v2",
		"options": map[string]any{"ConfigPath": "/w/podvm.toml"}}
}

// podvmInstallRuntime is the podvm handler without options: the shim finds
// its install's config itself.
func podvmInstallRuntime() map[string]any {
	return map[string]any{"runtime_type": "io.containerd.podvm.v2", "runtime_path": "/p/bin/containerd-shim-podvm-v2"}
}

func set(m map[string]any, key string, v any) map[string]any { m[key] = v; return m }

func TestContainerdConfigRender(t *testing.T) {
	cri := func(handlers ...Handler) *CRIConfig {
		return &CRIConfig{SandboxImage: "registry.k8s.io/pause:3.10.2", RegistryConfigPath: "/w/certs.d",
			CNIBinDir: "/usr/lib/cni", CNIConfDir: "/w/cni/net.d", Handlers: handlers}
	}
	runc := RuncHandler("runc", "/c/runc", "")
	podvm := PodvmHandler("podvm", "/p/bin/containerd-shim-podvm-v2", "/w/podvm.toml")
	installed := PodvmHandler("podvm", "/p/bin/containerd-shim-podvm-v2", "/p/share/podvm/config.toml")
	for _, tc := range []struct {
		name string
		cfg  ContainerdConfig
		want map[string]any
		// order are strings that must appear in this order in the text.
		order []string
	}{
		{
			name: "without CRI (ctr tests)",
			cfg:  ContainerdConfig{Dir: "/w", Address: "/w/c.sock", DisabledPlugins: NoCRIPlugins},
			want: set(base(), "disabled_plugins", []any{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",
				"io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"}),
		},
		{
			name: "without CRI, extra appended",
			cfg: ContainerdConfig{Dir: "/w", Address: "/w/c.sock",
				Extra: "[plugins.\"io.containerd.gc.v1.scheduler\"]\n  pause_threshold = 0.5\n"},
			want: func() map[string]any {
				m := base()
				m["plugins"].(map[string]any)["io.containerd.gc.v1.scheduler"] = map[string]any{"pause_threshold": 0.5}
				return m
			}(),
		},
		{
			name: "runc only",
			cfg:  ContainerdConfig{Dir: "/w", Address: "/w/c.sock", DisabledPlugins: NoNRI, CRI: cri(runc)},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", "")}),
				"disabled_plugins", []any{"io.containerd.nri.v1.nri"}),
		},
		{
			name: "runc and podvm (integration tests)",
			cfg:  ContainerdConfig{Dir: "/w", Address: "/w/c.sock", DisabledPlugins: NoNRI, CRI: cri(runc, podvm)},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", ""), "podvm": podvmRuntime()}),
				"disabled_plugins", []any{"io.containerd.nri.v1.nri"}),
			order: []string{"runtimes.runc]", "runtimes.podvm]"},
		},
		{
			name: "podvm without options (the shim finds its install's config)",
			cfg: ContainerdConfig{Dir: "/w", Address: "/w/c.sock", DisabledPlugins: NoNRI,
				CRI: cri(runc, PodvmHandler("podvm", "/p/bin/containerd-shim-podvm-v2", ""))},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", ""), "podvm": podvmInstallRuntime()}),
				"disabled_plugins", []any{"io.containerd.nri.v1.nri"}),
		},
		{
			name: "podvm with its install's own config: no options either (config.Handler)",
			cfg:  ContainerdConfig{Dir: "/w", Address: "/w/c.sock", DisabledPlugins: NoNRI, CRI: cri(runc, installed)},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", ""), "podvm": podvmInstallRuntime()}),
				"disabled_plugins", []any{"io.containerd.nri.v1.nri"}),
		},
		{
			name: "runc with its own root, and podvm (benchmarks)",
			cfg: ContainerdConfig{Dir: "/w", Address: "/w/c.sock", DisabledPlugins: NoNRI,
				CRI: cri(RuncHandler("runc", "/c/runc", "/w/runc"), podvm)},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", "/w/runc"), "podvm": podvmRuntime()}),
				"disabled_plugins", []any{"io.containerd.nri.v1.nri"}),
		},
		{
			name: "conf.d import and a header, runc, test-handler and podvm (local cluster)",
			cfg: ContainerdConfig{Header: "Written by podvm cluster up.\nSecond line.", Imports: []string{"/w/conf.d/*.toml"},
				Dir: "/w", Address: "/w/c.sock", CRI: cri(runc, RuncHandler("test-handler", "/c/runc", ""), installed)},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", ""),
				"test-handler": runcRuntime("/c/runc", ""), "podvm": podvmInstallRuntime()}),
				"imports", []any{"/w/conf.d/*.toml"}),
			order: []string{"# Written by podvm cluster up.\n# Second line.\nversion = 4\nimports = ", "root = ",
				"runtimes.runc]", "runtimes.test-handler]", "runtimes.podvm]"},
		},
		{
			name: "conf.d import without podvm (a node for podvm deploy)",
			cfg: ContainerdConfig{Imports: []string{"/w/conf.d/*.toml"}, Dir: "/w", Address: "/w/c.sock",
				CRI: cri(runc, RuncHandler("test-handler", "/c/runc", ""))},
			want: set(withCRI(base(), map[string]any{"runc": runcRuntime("/c/runc", ""),
				"test-handler": runcRuntime("/c/runc", "")}),
				"imports", []any{"/w/conf.d/*.toml"}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.cfg.Render()
			var got map[string]any
			if err := toml.Unmarshal([]byte(text), &got); err != nil {
				t.Fatalf("not TOML: %v\n%s", err, text)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rendered\n%s\nparses to\n%#v\nwant\n%#v", text, got, tc.want)
			}
			rest := text
			for _, s := range tc.order {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Errorf("%q missing or out of order in\n%s", s, text)
					break
				}
				rest = rest[i+len(s):]
			}
			// imports must come before the first table, or containerd
			// reads it as a key of that table.
			if len(tc.cfg.Imports) > 0 && strings.Index(text, "imports =") > strings.Index(text, "\n[") {
				t.Errorf("imports after a table:\n%s", text)
			}
		})
	}
}
