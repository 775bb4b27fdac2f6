package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/conformance/report"
)

// Lines as containerd's log has them (from the make test run of
// 2026-12-07 23:46 UTC, ids shortened).
func criLine(name, ns, id string) string {
	return `time="2026-12-07T23:46:20.498Z" level=info msg="RunPodSandbox for name:\"` + name + `\" uid:\"0a2489ff\" namespace:\"` + ns + `\" returns sandbox id \"` + id + `\""`
}

func takenLine(id string) string {
	return `time="2026-12-07T23:46:19Z" level=info msg="pod VM taken from the VM cache" cached_vm=d6fa215e memory_mib=256 runtime=io.containerd.podvm.v2 sandbox=` + id + ` took=48ms vcpus=1`
}

func clonedLine(id string) string {
	return `time="2026-12-07T23:44:03Z" level=info msg="pod VM cloned from a VM template" accelerator=tcg memory_mib=256 runtime=io.containerd.podvm.v2 sandbox=` + id + ` template=/run/podvm/templates/f74a took=2.4s vcpus=1`
}

func bootedLine(id, reason string) string {
	msg := "pod VM not taken from the VM cache: booting it"
	if strings.Contains(reason, "template") {
		msg = "pod VM not cloned from a VM template: booting it"
	}
	return `time="2026-12-07T23:46:30Z" level=warning msg="` + msg + `" error="` + reason + `" runtime=io.containerd.podvm.v2 sandbox=` + id
}

const (
	poolEmpty    = "no cached VM for this pod: none ready (0 booting)"
	biggerPod    = "no cached VM for this pod: the pod needs 1x384 MiB, key 263aad10; ready: 1x256 MiB, key 263aad10; 1x256 MiB, key 263aad10"
	otherImage   = "no cached VM for this pod: the pod needs 1x256 MiB, key 99999999; ready: 1x256 MiB, key 263aad10"
	templateBusy = "another pod is saving this VM template (this pod does not wait for it)"
)

// vmLines is one sandbox's lines: containerd's, the shim's origin line
// (none when origin is ""), and "pod VM ready".
func vmLines(name, id, origin string) []string {
	lines := []string{criLine(name, "ns1", id)}
	if origin != "" {
		lines = append(lines, origin)
	}
	return append(lines, ready(id))
}

func join(groups ...[]string) string {
	var all []string
	for _, g := range groups {
		all = append(all, g...)
	}
	return strings.Join(all, "\n")
}

const kernelSpec = "A pod of the runtime class under test has a kernel of its own, not shared with another pod of the class"

var kernelCase = report.Case{Name: kernelSpec, Outcome: report.Passed, Labels: []string{"kernel", "isolation", "shared-kernel:same-boot-id"}}

func TestSpecOrigin(t *testing.T) {
	other := report.Case{Name: "A crash in one pod stays in that pod when its VMM is killed", Outcome: report.Passed}
	memory := report.Case{Name: "Resource limits a memory limit shows the pod no more memory than its limit", Outcome: report.Passed}
	for _, tc := range []struct {
		name   string
		mode   string
		c      report.Case
		pods   []string
		log    string
		ok     bool
		detail []string
	}{
		{name: "kernel spec on two cached VMs", mode: modeCache, c: kernelCase, pods: []string{"ns1/kernel-a", "ns1/kernel-b"},
			log: join(vmLines("kernel-a", "aa01", takenLine("aa01")), vmLines("kernel-b", "bb02", takenLine("bb02"))),
			ok:  true, detail: []string{"kernel-a cached, kernel-b cached"}},
		{name: "kernel spec with one pod that found the pool empty", mode: modeCache, c: kernelCase, pods: []string{"ns1/kernel-a", "ns1/kernel-b"},
			log:    join(vmLines("kernel-a", "aa01", takenLine("aa01")), vmLines("kernel-b", "bb02", bootedLine("bb02", poolEmpty))),
			detail: []string{"kernel-a cached, kernel-b booted (pool empty)", "must run on cached VMs only"}},
		{name: "kernel spec on a template class with a pod booted beside the template's save", mode: modeTemplate, c: kernelCase,
			pods:   []string{"ns1/kernel-a", "ns1/kernel-b"},
			log:    join(vmLines("kernel-a", "aa01", clonedLine("aa01")), vmLines("kernel-b", "bb02", bootedLine("bb02", templateBusy))),
			detail: []string{"kernel-a cloned, kernel-b booted (template being saved by another pod)", "must run on cloned VMs only"}},
		{name: "kernel spec on two clones", mode: modeTemplate, c: kernelCase, pods: []string{"ns1/kernel-a", "ns1/kernel-b"},
			log: join(vmLines("kernel-a", "aa01", clonedLine("aa01")), vmLines("kernel-b", "bb02", clonedLine("bb02"))),
			ok:  true, detail: []string{"kernel-a cloned, kernel-b cloned"}},
		{name: "a spec whose every pod found the pool empty", mode: modeCache, c: other, pods: []string{"ns1/vmm-kill-victim", "ns1/vmm-kill-bystander"},
			log:    join(vmLines("vmm-kill-victim", "aa01", bootedLine("aa01", poolEmpty)), vmLines("vmm-kill-bystander", "bb02", bootedLine("bb02", poolEmpty))),
			detail: []string{"vmm-kill-victim booted (pool empty), vmm-kill-bystander booted (pool empty)", "no pod VM of this spec was cached"}},
		{name: "a spec with one cached VM and one miss stands, said", mode: modeCache, c: other, pods: []string{"ns1/vmm-kill-victim", "ns1/vmm-kill-bystander"},
			log: join(vmLines("vmm-kill-victim", "aa01", takenLine("aa01")), vmLines("vmm-kill-bystander", "bb02", bootedLine("bb02", poolEmpty)),
				vmLines("vmm-kill-victim", "cc03", bootedLine("cc03", poolEmpty))),
			ok: true, detail: []string{"vmm-kill-victim cached, vmm-kill-bystander booted (pool empty), vmm-kill-victim booted (pool empty)"}},
		{name: "a pod bigger than the cache's VMs boots by design", mode: modeCache, c: memory, pods: []string{"ns1/memory-limit"},
			log: join(vmLines("memory-limit", "aa01", bootedLine("aa01", biggerPod))),
			ok:  true, detail: []string{"memory-limit booted (by design: the pod needs 1x384 MiB, the cache's VMs are 1x256 MiB)"}},
		{name: "a pod of another guest image than the cache's is a miss", mode: modeCache, c: memory, pods: []string{"ns1/memory-limit"},
			log:    join(vmLines("memory-limit", "aa01", bootedLine("aa01", otherImage))),
			detail: []string{"another guest image or VMM setting than the cache's", "no pod VM of this spec was cached"}},
		{name: "a pod VM that does not say where it came from", mode: modeCache, c: other, pods: []string{"ns1/vmm-kill-victim"},
			log:    join(vmLines("vmm-kill-victim", "aa01", "")),
			detail: []string{"vmm-kill-victim unsaid", "does not say where it came from"}},
		{name: "the node probe (runc) and other specs' pods are not the spec's VMs", mode: modeCache, c: kernelCase,
			pods: []string{"ns1/kernel-a", "ns1/node-probe-podvm-node"},
			log:  join(vmLines("kernel-a", "aa01", takenLine("aa01")), []string{criLine("node-probe-podvm-node", "ns1", "ee05")}, vmLines("hog", "dd04", bootedLine("dd04", poolEmpty))),
			ok:   true, detail: []string{"kernel-a cached"}},
		{name: "the kernel spec on no pod VM at all", mode: modeCache, c: kernelCase, detail: []string{"no pod VM of its own", "must run on cached VMs only"}},
		{name: "a spec that uses no pod of its own stands", mode: modeCache, c: other, ok: true, detail: []string{"no pod VM of its own"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := specOrigins(tc.mode, []report.Case{tc.c}, map[string][]string{tc.c.Name: tc.pods}, readPodVMs(tc.log))
			if len(got) != 1 {
				t.Fatalf("got %d origins, want 1: %+v", len(got), got)
			}
			if got[0].OK != tc.ok {
				t.Errorf("OK = %v, want %v: %s", got[0].OK, tc.ok, got[0].Detail)
			}
			for _, d := range tc.detail {
				if !strings.Contains(got[0].Detail, d) {
					t.Errorf("detail %q lacks %q", got[0].Detail, d)
				}
			}
		})
	}
}

// A skipped spec ran on nothing: it has no origin to judge.
func TestSpecOriginSkipsSkipped(t *testing.T) {
	c := kernelCase
	c.Outcome = report.Skipped
	if got := specOrigins(modeCache, []report.Case{c}, nil, nil); len(got) != 0 {
		t.Fatalf("origins of a skipped spec: %+v", got)
	}
}

func TestTemplateOrigin(t *testing.T) {
	c := factoryOrigin(modeTemplate, readPodVMs(join(vmLines("kernel-a", "aa01", clonedLine("aa01")), vmLines("kernel-b", "bb02", bootedLine("bb02", templateBusy)))))
	if !c.OK || !strings.Contains(c.Detail, "1 of 2 pod VMs cloned from a VM template") || !strings.Contains(c.Detail, "1 booted their own: 1: "+templateBusy) {
		t.Errorf("template class totals: %+v", c)
	}
	c = factoryOrigin(modeTemplate, readPodVMs(join(vmLines("kernel-b", "bb02", bootedLine("bb02", templateBusy)))))
	if c.OK || !strings.Contains(c.Detail, "no pod VM was cloned from a template") {
		t.Errorf("template class without a clone: %+v", c)
	}
}

// The spec suite's JSON report (Ginkgo's shape, trimmed) names the pods
// each spec used, by the spec's JUnit name.
func TestReadUsedPods(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.json")
	doc := `[{"SuiteDescription":"podvm isolation specs","SpecReports":[
	 {"ContainerHierarchyTexts":null,"LeafNodeType":"BeforeSuite","LeafNodeText":"","ReportEntries":[{"Name":"podvm-used-pod","Value":{"AsJSON":"\"ns1/x\"","Representation":"ns1/x"}}]},
	 {"ContainerHierarchyTexts":["A pod of the runtime class under test"],"LeafNodeType":"It","LeafNodeText":"has a kernel of its own, not shared with another pod of the class",
	  "ReportEntries":[{"Name":"podvm-used-pod","Value":{"AsJSON":"\"ns1/kernel-a\"","Representation":"ns1/kernel-a"}},
	                   {"Name":"pod kernel","Value":{"AsJSON":"{}","Representation":"{...}"}},
	                   {"Name":"podvm-used-pod","Value":{"AsJSON":"\"ns1/kernel-b\"","Representation":"ns1/kernel-b"}}]}]}]`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	used, err := readUsedPods(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(used[kernelSpec], " "); got != "ns1/kernel-a ns1/kernel-b" || len(used) != 1 {
		t.Fatalf("used pods: %q", used)
	}
}
