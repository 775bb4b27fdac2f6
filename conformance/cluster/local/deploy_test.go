package local

import (
	"os"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/internal/hostbed"
)

// A cluster for podvm deploy: containerd imports its drop-in directory and
// has no podvm (nor fake VM) handler, and there is no podvm (nor fake VM)
// RuntimeClass.
func TestWithoutPodvmHandler(t *testing.T) {
	l := layout{dir: "/var/lib/podvm/cluster"}
	for _, without := range []bool{false, true} {
		o := DefaultOptions()
		o.Runc, o.WithoutPodvmHandler = "/usr/bin/runc", without
		var ctrd struct {
			Imports []string
			Plugins map[string]struct {
				Containerd struct{ Runtimes map[string]any }
			}
		}
		if err := toml.Unmarshal([]byte(containerdConfig(l, o)), &ctrd); err != nil {
			t.Fatalf("containerd config: %v", err)
		}
		if len(ctrd.Imports) != 1 || ctrd.Imports[0] != "/var/lib/podvm/cluster/containerd/conf.d/*.toml" {
			t.Errorf("imports = %q", ctrd.Imports)
		}
		runtimes := ctrd.Plugins["io.containerd.cri.v1.runtime"].Containerd.Runtimes
		for _, h := range []string{"podvm", "runc-fakevm"} {
			if _, has := runtimes[h]; has == without {
				t.Errorf("WithoutPodvmHandler=%v: %s handler present %v", without, h, has)
			}
		}
		if fake, _ := runtimes["runc-fakevm"].(map[string]any); !without &&
			fake["options"].(map[string]any)["BinaryName"] != o.FakeVMRunc {
			t.Errorf("runc-fakevm handler %v, want BinaryName %s", fake, o.FakeVMRunc)
		}
		if rc := runtimeClassesManifest(o); strings.Contains(rc, "name: podvm") == without {
			t.Errorf("WithoutPodvmHandler=%v: RuntimeClasses\n%s", without, rc)
		}
		p := New(o)
		if _, ok := p.Cluster().RuntimeClasses["runc-fakevm"]; ok == without {
			t.Errorf("WithoutPodvmHandler=%v: Cluster().RuntimeClasses %v", without, p.Cluster().RuntimeClasses)
		}
		if _, ok := p.Cluster().RuntimeClasses["podvm"]; ok == without {
			t.Errorf("WithoutPodvmHandler=%v: Cluster().RuntimeClasses %v", without, p.Cluster().RuntimeClasses)
		}
	}
}

func TestWriteOwnHost(t *testing.T) {
	dir := t.TempDir()
	if err := writeOwnHost(dir, "127.0.0.1:41234"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "/127.0.0.1:41234/hosts.toml")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Server string
		Host   map[string]struct{ Capabilities []string }
	}
	if err := toml.Unmarshal(b, &h); err != nil {
		t.Fatalf("hosts.toml: %v\n%s", err, b)
	}
	if h.Server != "http://127.0.0.1:41234" || len(h.Host["http://127.0.0.1:41234"].Capabilities) != 2 {
		t.Errorf("hosts.toml = %+v", h)
	}
}

// joinCgroups finds each of containerd's hierarchies by the controller
// names /proc/PID/cgroup gives, in whatever order they are listed.
func TestCgroupHierarchyNames(t *testing.T) {
	if got, want := sortedList("cpuacct,cpu"), "cpu,cpuacct"; got != want {
		t.Errorf("sortedList = %q, want %q", got, want)
	}
	for _, mp := range hostbed.CgroupMounts() {
		name, err := cgroupControllers(mp)
		if err != nil {
			t.Errorf("%s: %v", mp, err)
			continue
		}
		if strings.Contains(name, "rw") || strings.Contains(name, "release_agent") {
			t.Errorf("%s: hierarchy name %q keeps mount options", mp, name)
		}
	}
	// Every hierarchy this process is in is found among the mounts.
	names := map[string]bool{}
	for _, mp := range hostbed.CgroupMounts() {
		if n, err := cgroupControllers(mp); err == nil {
			names[n] = true
		}
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && !names[sortedList(parts[1])] {
			t.Errorf("hierarchy %q of /proc/self/cgroup not found among the cgroup mounts %v", parts[1], names)
		}
	}
	if _, err := cgroupControllers("/not/a/cgroup"); err == nil {
		t.Errorf("a non-cgroup mount point has a hierarchy name")
	}
}
