package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/runtime/config"
)

// podvm runs the command line as a user would and returns its exit code,
// stdout and stderr.
func podvm(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// isolatedConfig points the configuration's resolution at an empty etc
// dir of its own and returns it.
func isolatedConfig(t *testing.T) string {
	etc := filepath.Join(t.TempDir(), "etc")
	old := config.EtcDir
	config.EtcDir = etc
	t.Cleanup(func() { config.EtcDir = old })
	t.Setenv(config.EnvPath, "")
	return etc
}

func TestExitCodes(t *testing.T) {
	stableEnv(t)
	isolatedConfig(t)
	missing := filepath.Join(t.TempDir(), "absent.toml")
	for _, tt := range []struct {
		args       []string
		code       int
		stderrHas  []string
		stdoutHave string
	}{
		{args: []string{"version"}, code: exitOK, stdoutHave: "podvm "},
		{args: []string{"clusterr"}, code: exitUsage, stderrHas: []string{`unknown command "clusterr"`, "did you mean cluster?", "see 'podvm --help'"}},
		{args: []string{"config", "bogus"}, code: exitUsage, stderrHas: []string{`unknown command "bogus" for "podvm config"`, "see 'podvm config --help'"}},
		{args: []string{"cluster", "--provider", "bogus", "status"}, code: exitUsage, stderrHas: []string{`"bogus" for "--provider"`, "local, kind", "see 'podvm cluster status --help'"}},
		{args: []string{"conformance", "--provider", "kind"}, code: exitUsage, stderrHas: []string{"must be one of local, existing"}},
		{args: []string{"version", "-o", "xml"}, code: exitUsage, stderrHas: []string{"text, json, yaml", "see 'podvm version --help'"}},
		{args: []string{"config", "show", "--output", "json5"}, code: exitUsage, stderrHas: []string{"text, json, yaml, toml"}},
		{args: []string{"deploy", "render", "--image-pull-policy", "sometimes"}, code: exitUsage, stderrHas: []string{"Always, IfNotPresent, Never"}},
		{args: []string{"deploy", "render", "--image", "x", "-l", "novalue"}, code: exitUsage, stderrHas: []string{"want key=value"}},
		{args: []string{"version", "extra"}, code: exitUsage, stderrHas: []string{"unknown command \"extra\"", "see 'podvm version --help'"}},
		{args: []string{"check", "--no-such-flag"}, code: exitUsage, stderrHas: []string{"unknown flag: --no-such-flag", "see 'podvm check --help'"}},
		{args: []string{"conformance", "--runtime-classes", "podvm", "--baseline", "runc"}, code: exitUsage, stderrHas: []string{"--baseline"}},
		{args: []string{"conformance", "--context", "x"}, code: exitUsage, stderrHas: []string{"only the existing provider"}},
		// Unmet prerequisites: the host or the install lacks something.
		{args: []string{"check", "--config", missing}, code: exitPrerequisite, stderrHas: []string{"check(s) failed"}, stdoutHave: "absent.toml"},
		{args: []string{"install", "--prefix", t.TempDir(), "--image-dir", t.TempDir()}, code: exitPrerequisite, stderrHas: []string{"make build"}},
		// Failures of what ran.
		{args: []string{"config", "validate", missing}, code: exitFailure, stderrHas: []string{"absent.toml"}},
		{args: []string{"cluster", "status", "--cluster-dir", t.TempDir()}, code: exitFailure, stderrHas: []string{"podvm cluster up"}},
		// A deprecated name still works, and says what replaces it.
		{args: []string{"cluster", "status", "--dir", t.TempDir()}, code: exitFailure, stderrHas: []string{"--dir is deprecated, use --cluster-dir", "podvm cluster up"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := podvm(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, want := range tt.stderrHas {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if !strings.Contains(stdout, tt.stdoutHave) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdoutHave, stdout)
			}
			if tt.code != exitUsage && strings.Contains(stderr, "--help'") {
				t.Errorf("not a usage error, yet told to read the help:\n%s", stderr)
			}
		})
	}
}

// keys are the sorted keys of a JSON object.
func keys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, raw)
	}
	return slices.Sorted(maps.Keys(m))
}

func TestVersionJSON(t *testing.T) {
	code, stdout, _ := podvm(t, "version", "-o", "json", "--prefix", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := keys(t, json.RawMessage(stdout)); !reflect.DeepEqual(got, []string{"goVersion", "prefix", "revision", "version"}) {
		t.Errorf("keys %v:\n%s", got, stdout)
	}
}

// config show names every file in effect, in order, and every value, keyed
// as in the TOML file; validate says which files it read.
func TestConfigShowAndValidate(t *testing.T) {
	etc := isolatedConfig(t)
	for name, text := range map[string]string{
		"config.toml":         "[hypervisor]\ndefault_memory_mib = 400\n",
		"config.d/10-a.toml":  "[hypervisor]\ndefault_vcpus = 2\n",
		"config.d/20-b.toml":  "[runtime]\nagent_timeout = \"45s\"\n",
		"config.d/ignored.md": "not read",
	} {
		p := filepath.Join(etc, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := podvm(t, "config", "show", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var shown struct {
		Sources []config.Source
		Config  struct {
			Hypervisor struct {
				DefaultMemoryMiB int `json:"default_memory_mib"`
				DefaultVCPUs     int `json:"default_vcpus"`
				QEMU             struct {
					TCGTBSizeMiB int `json:"tcg_tb_size_mib"`
				} `json:"qemu"`
			}
			Runtime struct {
				AgentTimeout string `json:"agent_timeout"`
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &shown); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if got := keys(t, json.RawMessage(stdout)); !reflect.DeepEqual(got, []string{"config", "sources"}) {
		t.Errorf("keys %v", got)
	}
	want := []config.Source{{Origin: config.OriginOperator, Path: filepath.Join(etc, "config.toml")},
		{Origin: config.OriginDropIn, Path: filepath.Join(etc, "config.d/10-a.toml")}, {Origin: config.OriginDropIn, Path: filepath.Join(etc, "config.d/20-b.toml")}}
	if !reflect.DeepEqual(shown.Sources, want) {
		t.Errorf("sources %+v, want %+v", shown.Sources, want)
	}
	h := shown.Config.Hypervisor
	if h.DefaultMemoryMiB != 400 || h.DefaultVCPUs != 2 || h.QEMU.TCGTBSizeMiB != 64 || shown.Config.Runtime.AgentTimeout != "45s" {
		t.Errorf("values %+v, runtime %+v", h, shown.Config.Runtime)
	}
	code, stdout, _ = podvm(t, "config", "show")
	if code != 0 || !strings.Contains(stdout, "#   3. "+filepath.Join(etc, "config.d/20-b.toml")+" (drop-in)") || !strings.Contains(stdout, "default_memory_mib = 400") {
		t.Errorf("text: exit %d:\n%s", code, stdout)
	}
	code, stdout, _ = podvm(t, "config", "validate")
	if code != 0 || !strings.Contains(stdout, "ok: "+filepath.Join(etc, "config.toml")+" (operator) + ") {
		t.Errorf("validate: exit %d: %s", code, stdout)
	}
	os.RemoveAll(etc)
	code, stdout, _ = podvm(t, "config", "validate")
	if code != 0 || !strings.Contains(stdout, "ok: defaults (built in, no file)") {
		t.Errorf("validate without files: exit %d: %s", code, stdout)
	}
}

// check -o json: the config sources, ok, and one result per check.
func TestCheckJSON(t *testing.T) {
	isolatedConfig(t)
	cfg := filepath.Join(t.TempDir(), "podvm.toml")
	if err := os.WriteFile(cfg, []byte("[hypervisor]\nkernel = \"/nonexistent/vmlinux\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := podvm(t, "check", "--config", cfg, "-o", "json")
	if code != exitPrerequisite {
		t.Errorf("exit %d, want %d with a missing kernel", code, exitPrerequisite)
	}
	if got := keys(t, json.RawMessage(stdout)); !reflect.DeepEqual(got, []string{"config", "ok", "results"}) {
		t.Fatalf("keys %v", got)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Config) != 1 || rep.Config[0].Path != cfg || len(rep.Results) < 3 {
		t.Fatalf("report %+v", rep)
	}
	kernel := rep.Results[1]
	if kernel.Name != "guest kernel" || kernel.Status != "missing" || kernel.Fix == "" {
		t.Errorf("kernel result %+v", kernel)
	}
	for _, r := range rep.Results {
		if r.Status != "ok" && r.Status != "fallback" && r.Status != "missing" {
			t.Errorf("result %+v: status not ok, fallback or missing", r)
		}
	}
}

func TestClusterStatusJSON(t *testing.T) {
	st := newClusterStatusForTest()
	var b bytes.Buffer
	if err := writeOutput(&b, outputJSON, st); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b.Bytes()); !reflect.DeepEqual(got, []string{"components", "healthy", "provider"}) {
		t.Errorf("keys %v", got)
	}
	var out struct{ Components []json.RawMessage }
	if err := json.Unmarshal(b.Bytes(), &out); err != nil || len(out.Components) != 2 {
		t.Fatalf("%v: %s", err, b.String())
	}
	if got := keys(t, out.Components[0]); !reflect.DeepEqual(got, []string{"detail", "log", "name", "pid", "up"}) {
		t.Errorf("component keys %v", got)
	}
	if got := keys(t, out.Components[1]); !reflect.DeepEqual(got, []string{"detail", "name", "up"}) {
		t.Errorf("a component without pid and log: keys %v", got)
	}
}

func newClusterStatusForTest() clusterStatus {
	return newClusterStatus(&cluster.Status{Provider: "local", Components: []cluster.Component{
		{Name: "etcd", PID: 42, Up: true, Detail: "127.0.0.1:2379", Log: "/var/lib/podvm/cluster/logs/etcd.log"},
		{Name: "node", Up: false, Detail: "not Ready"},
	}})
}
