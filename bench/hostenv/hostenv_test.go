package hostenv

import (
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/runtime/config"
)

func TestContainerdConfig(t *testing.T) {
	tools := &Tools{Shim: "/p/bin/containerd-shim-podvm-v2", Runc: "/c/runc", CNIBinDir: "/usr/lib/cni"}
	n := &network{confDir: "/w/cni/net.d"}
	for _, tc := range []struct {
		name     string
		runsc    string
		handlers []string
	}{
		{"without gVisor", "", []string{"podvm", "runc"}},
		// gVisor runs through ctr only.
		{"with gVisor", "/c/runsc", []string{"podvm", "runc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tools.Runsc = tc.runsc
			text := containerdConfig("/w", tools, "/w/podvm.toml", "/w/certs.d", "registry.k8s.io/pause:3.10.2", n)
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
			if runc := rt.Containerd.Runtimes["runc"]; runc.Options["BinaryName"] != tools.Runc || runc.Options["Root"] != "/w/runc" {
				t.Errorf("runc handler %+v", runc)
			}
		})
	}
}

func TestPodvmConfig(t *testing.T) {
	installed := config.DefaultTOML()
	out, err := podvmConfig(installed, StateDir)
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
	if _, err := podvmConfig([]byte("not toml ["), StateDir); err == nil {
		t.Error("no error for a broken config")
	}
}

func TestParseHierarchies(t *testing.T) {
	hybrid := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 41 0:38 /sub /mnt/elsewhere rw,relatime - cgroup2 cgroup2 rw
`
	v2 := "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	for _, tc := range []struct {
		name, text string
		want       []hierarchy
	}{
		{"hybrid", hybrid, []hierarchy{{mount: "/sys/fs/cgroup/cpu"}, {mount: "/sys/fs/cgroup/memory", memory: true}, {mount: "/sys/fs/cgroup/unified", v2: true}}},
		{"v2 only", v2, []hierarchy{{mount: "/sys/fs/cgroup", v2: true, memory: true}}},
	} {
		if got := parseHierarchies(tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestPickSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		used []netip.Prefix
		want string
	}{
		{"nothing used", nil, "10.214.0.0/24"},
		{"first two used", []netip.Prefix{p("10.214.0.0/24"), p("10.214.1.5/32")}, "10.214.2.0/24"},
		{"unrelated", []netip.Prefix{p("192.168.0.0/16"), p("10.213.0.0/16")}, "10.214.0.0/24"},
		{"all used", []netip.Prefix{p("10.0.0.0/8")}, ""},
	} {
		got, err := pickSubnet(tc.used)
		if (tc.want == "") != (err != nil) || (err == nil && got.String() != tc.want) {
			t.Errorf("%s: %v %v, want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	text := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0100A8C0	0003	0	0	0	00000000	0	0	0
eth0	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
br0	0000C80A	00000000	0001	0	0	0	0000FFFF	0	0	0
`
	got := parseRoutes(text)
	want := []netip.Prefix{netip.MustParsePrefix("192.168.0.0/24"), netip.MustParsePrefix("10.200.0.0/16")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseRoutes = %v, want %v", got, want)
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
