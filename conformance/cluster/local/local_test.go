package local

import (
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"

	"github.com/podvm/podvm/internal/hostbed"
)

// The local cluster runs what ci/install-tools.sh builds: the versions in
// both places must agree, or preflight sends users to a build that never
// produces the path it checks.
func TestVersionsMatchInstallScript(t *testing.T) {
	b, err := os.ReadFile("../../../ci/install-tools.sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"KUBERNETES_VERSION": KubernetesVersion, "ETCD_VERSION": EtcdVersion,
		"CONTAINERD_VERSION": ContainerdVersion, "RUNC_VERSION": RuncVersion, "CRI_TOOLS_VERSION": CRIToolsVersion,
		"GINKGO_VERSION": GinkgoVersion,
	} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(b)
		if m == nil || string(m[1]) != want {
			t.Errorf("ci/install-tools.sh %s = %q, Go constant = %q", name, m, want)
		}
	}
}

func testState() state {
	return state{NodeName: "n1", NodeIP: netip.MustParseAddr("10.201.0.1"), PodCIDR: netip.MustParsePrefix("10.201.0.0/24"),
		ServiceCIDR: netip.MustParsePrefix("10.202.0.0/24"), Bridge: "br-test", APIServerPort: 6443, EtcdPort: 2379, KubeletPort: 10250}
}

// The rendered files must parse as what their consumers read; a stray
// format verb or quote would only show when the cluster fails to start.
func TestRenderedConfigsParse(t *testing.T) {
	l := layout{dir: "/var/lib/podvm/cluster"}
	o := DefaultOptions()
	o.Runc, o.PodvmPrefix = "/usr/bin/runc", "/opt/podvm"
	s := testState()

	var ctrd map[string]any
	if err := toml.Unmarshal([]byte(containerdConfig(l, o)), &ctrd); err != nil {
		t.Fatalf("containerd config: %v", err)
	}
	runtimes := ctrd["plugins"].(map[string]any)["io.containerd.cri.v1.runtime"].(map[string]any)["containerd"].(map[string]any)["runtimes"].(map[string]any)
	for _, h := range []string{"runc", "podvm", TemplateClass, CacheClass, "test-handler"} {
		if _, ok := runtimes[h]; !ok {
			t.Errorf("containerd config lacks handler %s", h)
		}
	}
	if got := runtimes["podvm"].(map[string]any)["runtime_path"]; got != "/opt/podvm/bin/containerd-shim-podvm-v2" {
		t.Errorf("podvm runtime_path = %v", got)
	}
	if got := runtimes[CacheClass].(map[string]any)["options"].(map[string]any)["ConfigPath"]; got != "/opt/podvm/share/podvm/config-cache.toml" {
		t.Errorf("%s ConfigPath = %v", CacheClass, got)
	}

	var kc map[string]any
	if err := yaml.Unmarshal([]byte(kubeletConfig(l, s, o)), &kc); err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	for key, want := range map[string]any{"cgroupDriver": "cgroupfs", "failCgroupV1": false, "failSwapOn": false,
		"address": "10.201.0.1", "podPidsLimit": o.PodPidsLimit, "resolvConf": l.emptyResolvConf(), "cgroupRoot": "/"} {
		if kc[key] != want {
			t.Errorf("kubelet %s = %v, want %v", key, kc[key], want)
		}
	}
	if ev := kc["evictionHard"].(map[string]any); ev["nodefs.available"] != "1%" {
		t.Errorf("evictionHard = %v", ev)
	}

	var kcfg map[string]any
	if err := yaml.Unmarshal([]byte(kubeconfigFor(l, s, "admin", "admin")), &kcfg); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	if !strings.Contains(kubeconfigFor(l, s, "admin", "admin"), "server: https://10.201.0.1:6443") {
		t.Errorf("kubeconfig server address wrong")
	}

	docs := strings.Split(runtimeClassesManifest(o), "\n---\n")
	if len(docs) != 5 {
		t.Fatalf("want 5 RuntimeClasses (runc, podvm, podvm-template, podvm-cache, runc-fakevm), got %d", len(docs))
	}
	var rc struct {
		Handler  string `yaml:"handler"`
		Overhead struct {
			PodFixed map[string]string `yaml:"podFixed"`
		} `yaml:"overhead"`
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &rc); err != nil || rc.Handler != "podvm" || rc.Overhead.PodFixed["memory"] != o.OverheadMemory {
		t.Errorf("podvm RuntimeClass: %+v, %v", rc, err)
	}
	rc.Handler, rc.Overhead.PodFixed = "", nil
	if err := yaml.Unmarshal([]byte(docs[2]), &rc); err != nil || rc.Handler != TemplateClass || rc.Overhead.PodFixed["memory"] != o.OverheadMemory {
		t.Errorf("podvm-template RuntimeClass: %+v, %v", rc, err)
	}
	rc.Handler, rc.Overhead.PodFixed = "", nil
	if err := yaml.Unmarshal([]byte(docs[3]), &rc); err != nil || rc.Handler != CacheClass || rc.Overhead.PodFixed["memory"] != o.OverheadMemory {
		t.Errorf("podvm-cache RuntimeClass: %+v, %v", rc, err)
	}
	if !strings.Contains(docs[4], "name: runc-fakevm\nhandler: runc-fakevm\n") || strings.Contains(docs[4], "overhead") {
		t.Errorf("fake VM RuntimeClass:\n%s", docs[4])
	}
}

func TestFreePrefixesAvoidHostNetworks(t *testing.T) {
	got, err := freePrefixes(2)
	if err != nil {
		t.Fatal(err)
	}
	used, _ := hostbed.HostPrefixes()
	for _, p := range got {
		for _, u := range used {
			if u.Bits() > 0 && u.Overlaps(p) {
				t.Errorf("%s overlaps host network %s", p, u)
			}
		}
	}
	if got[0] == got[1] {
		t.Errorf("pod and service ranges are the same: %v", got)
	}
}
