package fakevm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/internal/hostbed"
)

var testHost = Host{Now: time.Unix(1_800_000_000, 0), BootTime: 5000 * time.Second, Monotonic: 4990 * time.Second, TimeNamespaces: true}

// A pod container as containerd's CRI writes it: joins the sandbox's
// namespaces but for its own mount and PID ones; a 128 MiB, 1.5 CPU limit.
func podContainer() *specs.Spec {
	limit, quota, period := int64(128<<20), int64(150000), uint64(100000)
	return &specs.Spec{
		Annotations: map[string]string{sandboxIDAnnotation: "0123456789abcdef0123", "io.kubernetes.cri.container-type": "container"},
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace},
				{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}},
			Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}},
		},
	}
}

func TestEditPodContainer(t *testing.T) {
	dir := t.TempDir()
	spec := podContainer()
	if err := Edit(spec, dir, testHost); err != nil {
		t.Fatal(err)
	}
	mounts := map[string]specs.Mount{}
	for _, m := range spec.Mounts {
		mounts[m.Destination] = m
	}
	for _, name := range []string{"meminfo", "cpuinfo", "stat", "loadavg"} {
		m, ok := mounts["/proc/"+name]
		if !ok || m.Type != "bind" || m.Source != filepath.Join(dir, name) {
			t.Errorf("no bind mount of %s over /proc/%s: %+v", filepath.Join(dir, name), name, m)
		}
	}
	if spec.Mounts[0].Destination != "/proc" {
		t.Errorf("the fake files must be mounted after /proc itself: %+v", spec.Mounts)
	}
	meminfo, _ := os.ReadFile(filepath.Join(dir, "meminfo"))
	if !strings.HasPrefix(string(meminfo), "MemTotal:         131072 kB\n") {
		t.Errorf("meminfo does not show the 128 MiB limit:\n%s", meminfo)
	}
	cpuinfo, _ := os.ReadFile(filepath.Join(dir, "cpuinfo"))
	if n := strings.Count(string(cpuinfo), "processor\t:"); n != 2 {
		t.Errorf("cpuinfo shows %d CPUs for a 1.5 CPU quota, want 2", n)
	}
	stat, _ := os.ReadFile(filepath.Join(dir, "stat"))
	if !strings.Contains(string(stat), "\ncpu1 ") || strings.Contains(string(stat), "\ncpu2 ") || !strings.Contains(string(stat), "btime 1800000000\n") {
		t.Errorf("stat:\n%s", stat)
	}
	if n := count(spec, specs.PIDNamespace); n != 1 {
		t.Errorf("%d PID namespaces, want the container's one", n)
	}
	if count(spec, specs.TimeNamespace) != 1 {
		t.Errorf("no time namespace: %+v", spec.Linux.Namespaces)
	}
	if got := spec.Linux.TimeOffsets["boottime"].Secs; got != -4999 {
		t.Errorf("boottime offset %d, want -4999 (uptime starts at 1 s)", got)
	}
	if got := spec.Linux.TimeOffsets["monotonic"].Secs; got != -4989 {
		t.Errorf("monotonic offset %d, want -4989", got)
	}
	if spec.Hostname != "" {
		t.Errorf("a container joining the sandbox's UTS namespace got hostname %q: runc refuses that", spec.Hostname)
	}
}

func TestEditSandbox(t *testing.T) {
	spec := &specs.Spec{
		Annotations: map[string]string{sandboxIDAnnotation: "0123456789abcdef0123"},
		Linux:       &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}}},
	}
	noTimeNS := testHost
	noTimeNS.TimeNamespaces = false
	if err := Edit(spec, t.TempDir(), noTimeNS); err != nil {
		t.Fatal(err)
	}
	if spec.Hostname != "fakevm-0123456789ab" {
		t.Errorf("hostname %q, want fakevm-0123456789ab", spec.Hostname)
	}
	if count(spec, specs.PIDNamespace) != 1 {
		t.Errorf("no PID namespace added: %+v", spec.Linux.Namespaces)
	}
	if count(spec, specs.TimeNamespace) != 0 || spec.Linux.TimeOffsets != nil {
		t.Errorf("time namespace on a kernel without them: %+v %+v", spec.Linux.Namespaces, spec.Linux.TimeOffsets)
	}
	files := Files(memoryOf(spec), cpusOf(spec), testHost.Now)
	if !strings.HasPrefix(files["meminfo"], "MemTotal:         262144 kB") || strings.Count(files["cpuinfo"], "processor") != 1 {
		t.Errorf("without limits: want a 256 MiB, 1 CPU guest:\n%s%s", files["meminfo"], files["cpuinfo"])
	}
}

func TestEditBundle(t *testing.T) {
	bundle := t.TempDir()
	b, _ := json.Marshal(podContainer())
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := EditBundle(bundle, testHost); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(bundle, "config.json"))
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Mounts) != 5 || spec.Annotations[sandboxIDAnnotation] == "" || spec.Linux.Resources.Memory == nil {
		t.Errorf("rewritten config lost or lacks something: %s", b)
	}
	if _, err := os.Stat(filepath.Join(bundle, "fakevm", "meminfo")); err != nil {
		t.Errorf("fake files not in the bundle: %v", err)
	}
}

func TestCommand(t *testing.T) {
	wd, _ := os.Getwd()
	for _, tt := range []struct {
		args        []string
		cmd, bundle string
	}{
		{[]string{"--root", "/run/containerd/runc/k8s.io", "--log", "/run/x/log.json", "--log-format", "json", "create", "--bundle", "/run/b", "--pid-file", "/run/b/init.pid", "abc"}, "create", "/run/b"},
		{[]string{"--systemd-cgroup", "run", "-b=/run/c", "abc"}, "run", "/run/c"},
		{[]string{"create", "abc"}, "create", wd},
		{[]string{"--root", "/run/r", "delete", "--force", "abc"}, "delete", ""},
		{[]string{"--root", "/run/r", "start", "abc"}, "start", ""},
		{[]string{"--version"}, "", ""},
	} {
		cmd, bundle, err := Command(tt.args)
		if err != nil || cmd != tt.cmd || bundle != tt.bundle {
			t.Errorf("Command(%q) = %q, %q, %v; want %q, %q", tt.args, cmd, bundle, err, tt.cmd, tt.bundle)
		}
	}
	if _, _, err := Command([]string{"create", "--bundle"}); err == nil {
		t.Error("--bundle without a value accepted")
	}
}

func TestWiring(t *testing.T) {
	toml := hostbed.ContainerdConfig{Dir: "/w", Address: "/w/c.sock", CRI: &hostbed.CRIConfig{
		Handlers: []hostbed.Handler{Handler("/opt/podvm/bin/podvm-fakevm-runc")}}}.Render()
	for _, want := range []string{`[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc-fakevm]`, `runtime_type = "io.containerd.runc.v2"`,
		`BinaryName = "/opt/podvm/bin/podvm-fakevm-runc"`} {
		if !strings.Contains(toml, want) {
			t.Errorf("handler TOML lacks %q:\n%s", want, toml)
		}
	}
	if rc := cluster.RuntimeClassesManifest("", RuntimeClass()); !strings.Contains(rc, "name: runc-fakevm\nhandler: runc-fakevm\n") {
		t.Errorf("RuntimeClass:\n%s", rc)
	}
}

func count(spec *specs.Spec, t specs.LinuxNamespaceType) int {
	n := 0
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			n++
		}
	}
	return n
}
