package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultMatchesDocumentedFile(t *testing.T) {
	c := Default()
	if c.Hypervisor.Driver != "qemu" || c.Hypervisor.DefaultMemoryMiB != 256 || c.Hypervisor.DefaultVCPUs != 1 {
		t.Fatalf("unexpected defaults: %+v", c.Hypervisor)
	}
	if time.Duration(c.Runtime.AgentTimeout) != 30*time.Second {
		t.Fatalf("agent_timeout default = %v", time.Duration(c.Runtime.AgentTimeout))
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		wantErr []string // substrings of the error; none means success
		check   func(*testing.T, *Config)
	}{
		{name: "empty file keeps defaults", input: "", check: func(t *testing.T, c *Config) {
			if c.Hypervisor.SharedFS != "virtiofs" {
				t.Errorf("shared_fs = %q", c.Hypervisor.SharedFS)
			}
		}},
		{name: "override one key", input: "[hypervisor]\ndefault_memory_mib = 512\n", check: func(t *testing.T, c *Config) {
			if c.Hypervisor.DefaultMemoryMiB != 512 || c.Hypervisor.DefaultVCPUs != 1 {
				t.Errorf("got %+v", c.Hypervisor)
			}
		}},
		{name: "nested table", input: "[hypervisor.qemu]\ntcg_tb_size_mib = 32\n", check: func(t *testing.T, c *Config) {
			if c.Hypervisor.QEMU.TCGTBSizeMiB != 32 || c.Hypervisor.QEMU.Path == "" {
				t.Errorf("got %+v", c.Hypervisor.QEMU)
			}
		}},
		{name: "syntax error names file and line", input: "[hypervisor]\ndriver = \"qemu\"\nkernel = \n",
			wantErr: []string{"test.toml:3:", "syntax error"}},
		{name: "unknown key named with position", input: "[hypervisor]\n\nkernal = \"/x\"\n",
			wantErr: []string{"test.toml:3:1", `unknown key "hypervisor.kernal"`}},
		{name: "unknown table", input: "[hypervisr]\ndriver = \"qemu\"\n",
			wantErr: []string{"unknown key", "hypervisr"}},
		{name: "bad enum", input: "[hypervisor]\naccelerator = \"fast\"\n",
			wantErr: []string{`accelerator = "fast"`, "auto, kvm, tcg"}},
		{name: "guest OCI runtime crun", input: "[hypervisor]\nguest_oci_runtime = \"crun\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Hypervisor.GuestOCIRuntime != "crun" {
					t.Errorf("guest_oci_runtime %q", c.Hypervisor.GuestOCIRuntime)
				}
			}},
		{name: "guest OCI runtime auto", input: "[hypervisor]\nguest_oci_runtime = \"auto\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Hypervisor.GuestOCIRuntime != "auto" {
					t.Errorf("guest_oci_runtime %q", c.Hypervisor.GuestOCIRuntime)
				}
			}},
		{name: "bad guest OCI runtime", input: "[hypervisor]\nguest_oci_runtime = \"youki\"\n",
			wantErr: []string{`guest_oci_runtime = "youki"`, "runc, crun"}},
		{name: "bad duration", input: "[runtime]\nagent_timeout = \"soon\"\n",
			wantErr: []string{"not a duration"}},
		{name: "cloud-hypervisor driver with its settings", input: "[hypervisor]\ndriver = \"cloud-hypervisor\"\n[hypervisor.cloud_hypervisor]\npath = \"/usr/local/bin/cloud-hypervisor\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Hypervisor.Driver != "cloud-hypervisor" || c.Hypervisor.CloudHypervisor.Path != "/usr/local/bin/cloud-hypervisor" {
					t.Errorf("got %+v", c.Hypervisor)
				}
			}},
		{name: "cloud-hypervisor refuses tcg, 9p and serial", input: "[hypervisor]\ndriver = \"cloud-hypervisor\"\naccelerator = \"tcg\"\nshared_fs = \"9p\"\nagent_transport = \"serial\"\n",
			wantErr: []string{"needs hardware KVM", "only with virtiofs", "(hybrid) vsock only"}},
		{name: "unknown driver", input: "[hypervisor]\ndriver = \"firecracker\"\n",
			wantErr: []string{`hypervisor.driver = "firecracker"`, "qemu, cloud-hypervisor"}},
		{name: "too little memory", input: "[hypervisor]\ndefault_memory_mib = 8\n",
			wantErr: []string{"default_memory_mib = 8"}},
		{name: "jail uid range below 65536", input: "[hypervisor.qemu]\njail_uid_base = 1000\n",
			wantErr: []string{"jail_uid_base = 1000", "from 65536 up"}},
		{name: "jail on by default, off by key", input: "[hypervisor.qemu]\njail = false\njail_uid_base = 1000\n", check: func(t *testing.T, c *Config) {
			if c.Hypervisor.QEMU.Jail || Default().Hypervisor.QEMU.Jail != true || Default().Hypervisor.QEMU.JailUIDCount == 0 {
				t.Errorf("got %+v, default %+v", c.Hypervisor.QEMU, Default().Hypervisor.QEMU)
			}
		}},
		{name: "factory none by default, template with 9p", input: "[hypervisor]\nshared_fs = \"9p\"\n[factory]\nmode = \"template\"\ntemplate_dir = \"/t\"\n", check: func(t *testing.T, c *Config) {
			if c.Factory.Mode != FactoryTemplate || c.Factory.TemplateDir != "/t" || Default().Factory.Mode != FactoryNone || Default().Factory.TemplateDir == "" {
				t.Errorf("got %+v, default %+v", c.Factory, Default().Factory)
			}
		}},
		{name: "factory cache with qemu", input: "[factory]\nmode = \"cache\"\n", check: func(t *testing.T, c *Config) {
			if c.Factory.Mode != FactoryCache {
				t.Errorf("got %+v", c.Factory)
			}
		}},
		{name: "factory cache needs qemu and serial", input: "[hypervisor]\ndriver = \"cloud-hypervisor\"\nagent_transport = \"vsock\"\n[factory]\nmode = \"cache\"\n",
			wantErr: []string{`factory.mode = "cache": driver "cloud-hypervisor"`, `factory.mode = "cache": hypervisor.agent_transport = "vsock"`}},
		{name: "factory cache keys", input: "[factory]\ncache_size = 4\ncache_max_age = \"10m\"\n", check: func(t *testing.T, c *Config) {
			if c.Factory.CacheSize != 4 || c.Factory.CacheMaxAge != Duration(10*time.Minute) || Default().Factory.CacheSize != 2 || Default().Factory.CacheMaxAge != Duration(time.Hour) {
				t.Errorf("got %+v, default %+v", c.Factory, Default().Factory)
			}
		}},
		{name: "factory cache keys out of range", input: "[factory]\ncache_size = -1\ncache_max_age = \"-1s\"\n",
			wantErr: []string{"factory.cache_size = -1: must be from 0 to 64", "factory.cache_max_age = -1s: must not be negative"}},
		{name: "factory cache refill quiet", input: "[factory]\ncache_refill_quiet = \"1s\"\ncache_refill_quiet_max = \"5s\"\n", check: func(t *testing.T, c *Config) {
			if c.Factory.CacheRefillQuiet != Duration(time.Second) || c.Factory.CacheRefillQuietMax != Duration(5*time.Second) {
				t.Errorf("refill quiet %v, bound %v", c.Factory.CacheRefillQuiet, c.Factory.CacheRefillQuietMax)
			}
			if d := Default().Factory; d.CacheRefillQuiet != Duration(10*time.Second) || d.CacheRefillQuietMax != Duration(30*time.Second) {
				t.Errorf("default refill quiet %v, bound %v", d.CacheRefillQuiet, d.CacheRefillQuietMax)
			}
		}},
		{name: "factory cache refill quiet out of range", input: "[factory]\ncache_refill_quiet = \"-1s\"\ncache_refill_quiet_max = \"0s\"\n",
			wantErr: []string{"factory.cache_refill_quiet = -1s: must not be negative", "factory.cache_refill_quiet_max = 0s: must be positive"}},
		{name: "factory unknown mode", input: "[factory]\nmode = \"fork\"\n",
			wantErr: []string{`factory.mode = "fork"`}},
		{name: "factory template needs qemu, 9p, serial and an absolute dir", input: "[hypervisor]\ndriver = \"cloud-hypervisor\"\nagent_transport = \"vsock\"\n[factory]\nmode = \"template\"\ntemplate_dir = \"t\"\n",
			wantErr: []string{`driver "cloud-hypervisor" cannot restore`, `shared_fs = "virtiofs"`, `agent_transport = "vsock"`, `template_dir = "t"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.input), "test.toml")
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want error containing %q, got nil", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Fatalf("a named missing file must be an error naming it, got %v", err)
	}
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("[hypervisor]\ndebug = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || !c.Hypervisor.Debug {
		t.Fatalf("Load = %+v, %v", c, err)
	}
}

func TestResolveFor(t *testing.T) {
	prefix := t.TempDir()
	shim := filepath.Join(prefix, "bin", "containerd-shim-podvm-v2")
	installed := filepath.Join(prefix, InstalledRel)
	if err := os.MkdirAll(filepath.Dir(installed), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(installed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(t.TempDir(), "bin", "containerd-shim-podvm-v2")
	tests := []struct {
		name, path, env, exe, want string
	}{
		{"option wins", "/etc/x.toml", "/env.toml", shim, "/etc/x.toml"},
		{"environment next", "", "/env.toml", shim, "/env.toml"},
		{"the install's own config", "", "", shim, installed},
		{"no install config: the default", "", "", elsewhere, DefaultPath},
		{"no executable: the default", "", "", "", DefaultPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvPath, tt.env)
			if got := ResolveFor(tt.path, tt.exe); got != tt.want {
				t.Errorf("ResolveFor(%q, %q) with $%s=%q = %q, want %q", tt.path, tt.exe, EnvPath, tt.env, got, tt.want)
			}
		})
	}
}
