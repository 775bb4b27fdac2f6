package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Each spec's pod VMs are in report.md, origin.json and the JUnit; a spec
// whose origin check failed is an unexpected result of its run.
func TestSpecOriginsInTheReport(t *testing.T) {
	cache := Run{Suite: "isolation specs (spec/)", RuntimeClass: "podvm-cache",
		Cases:  []Case{{Name: "has a kernel of its own", Outcome: Passed}, {Name: "a memory limit", Outcome: Passed}},
		Origin: &Check{OK: true, Detail: "3 of 3 pod VMs taken from the VM cache"},
		SpecOrigins: []SpecOrigin{
			{Spec: "has a kernel of its own", OK: false, Detail: "kernel-a cached, kernel-b booted (pool empty): this spec must run on cached VMs only",
				FirstRun: "kernel-a booted (pool empty), kernel-b booted (pool empty)",
				PodVMs:   []PodVM{{Pod: "ns/kernel-a", Sandbox: "aa", From: "cached"}, {Pod: "ns/kernel-b", Sandbox: "bb", From: "booted", Why: "pool empty", Reason: "none ready (0 booting)"}}},
			{Spec: "a memory limit", OK: true, Detail: "memory-limit booted (by design: the pod needs 1x384 MiB, the cache's VMs are 1x256 MiB)"},
		}}
	rep := &Report{Title: "t", Runs: []Run{{Suite: "isolation specs (spec/)", RuntimeClass: "runc", Baseline: true, Cases: []Case{{Name: "has a kernel of its own", Outcome: Failed}}}, cache}}
	var md, ju, js bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"**Verdict: FAIL**",
		"isolation specs (spec/) [podvm-cache]: has a kernel of its own (pod VMs' origin): got failed, want passed: kernel-a cached, kernel-b booted (pool empty)",
		"- isolation specs (spec/) [podvm-cache] pod VMs per spec:\n  - has a kernel of its own: **FAILED**: kernel-a cached, kernel-b booted (pool empty): this spec must run on cached VMs only (re-run once; the first run's: kernel-a booted (pool empty), kernel-b booted (pool empty))\n  - a memory limit: ok: memory-limit booted (by design",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md.String())
		}
	}
	if err := rep.WriteJUnit(&ju); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ju.String(), `<testcase name="pod VMs&#39; origin: has a kernel of its own" classname="isolation specs (spec/) [podvm-cache]" time="0">`+"\n      <failure message=\"kernel-a cached") {
		t.Errorf("junit lacks the failed origin case:\n%s", ju.String())
	}
	if !rep.HasOrigins() {
		t.Fatal("HasOrigins is false")
	}
	if err := rep.WriteOriginJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back []originRun
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || back[0].RuntimeClass != "podvm-cache" || len(back[0].Specs) != 2 || back[0].Specs[0].PodVMs[1].Why != "pool empty" || back[0].Total == nil {
		t.Errorf("origin.json: %s", js.String())
	}
}
