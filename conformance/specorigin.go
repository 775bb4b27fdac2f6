package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/podvm/podvm/conformance/report"
)

// usedPodEntry is the report entry in which the spec suite names each pod
// a spec used, "namespace/name" (spec/suite_test.go UsedPodEntry).
const usedPodEntry = "podvm-used-pod"

// factoryRequiredFact labels the spec that must have run on the factory's
// VMs only, or the class's pass says nothing of the factory: "has a kernel
// of its own", which a clone keeping its template's boot id, or one cached
// VM handed to two pods, would fail.
const factoryRequiredFact = "shared-kernel:same-boot-id"

// ginkgoReport is the part of Ginkgo's JSON report the harness reads.
type ginkgoReport []struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeType            string
		LeafNodeText            string
		ReportEntries           []struct {
			Name  string
			Value struct{ Representation string }
		}
	}
}

// readUsedPods reads, from the spec suite's JSON report, the pods each
// spec used, by the spec's name as the JUnit report gives it.
func readUsedPods(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep ginkgoReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	out := map[string][]string{}
	for _, suite := range rep {
		for _, s := range suite.SpecReports {
			if s.LeafNodeType != "It" {
				continue
			}
			name := strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			for _, e := range s.ReportEntries {
				if e.Name == usedPodEntry {
					out[name] = append(out[name], e.Value.Representation)
				}
			}
		}
	}
	return out, nil
}

// specOrigins judges, for each spec that ran on a factory class, the pod
// VMs it used (its pods' sandboxes in the run's log).
func specOrigins(mode string, cases []report.Case, used map[string][]string, vms map[string]*podVM) []report.SpecOrigin {
	var out []report.SpecOrigin
	for _, c := range cases {
		if c.Outcome == report.Skipped {
			continue
		}
		out = append(out, judgeSpec(mode, c, podVMsOf(mode, used[c.Name], vms)))
	}
	return out
}

// podVMsOf are the pod VMs of pods, in the order the log first named them.
func podVMsOf(mode string, pods []string, vms map[string]*podVM) []report.PodVM {
	want := map[string]bool{}
	for _, p := range pods {
		want[p] = true
	}
	var list []*podVM
	for _, v := range vms {
		if want[v.pod] && v.isVM() {
			list = append(list, v)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	out := make([]report.PodVM, 0, len(list))
	for _, v := range list {
		pv := report.PodVM{Pod: v.pod, Sandbox: v.id, From: v.from}
		if pv.From == "" {
			pv.From = fromUnsaid
		}
		if v.from == fromBoot {
			pv.Reason = v.reason
			pv.Why, pv.ByDesign = bootWhy(mode, v.reason)
		}
		out = append(out, pv)
	}
	return out
}

// judgeSpec decides whether a spec's pod VMs let its result stand for the
// class: every pod VM says where it came from; the required spec ran on
// the factory's VMs only; any other spec ran on at least one of them
// unless every VM it booted was booted by design (a pod the factory does
// not serve, such as one bigger than the cache's VMs).
func judgeSpec(mode string, c report.Case, vms []report.PodVM) report.SpecOrigin {
	want := fromCache
	if mode == modeTemplate {
		want = fromTemplate
	}
	so := report.SpecOrigin{Spec: c.Name, PodVMs: vms, OK: true, Detail: describeVMs(vms)}
	served, misses, unsaid := 0, 0, 0
	for _, v := range vms {
		switch {
		case v.From == want:
			served++
		case v.From == fromUnsaid:
			unsaid++
		case !v.ByDesign:
			misses++
		}
	}
	switch {
	case unsaid > 0:
		so.OK, so.Detail = false, so.Detail+": a pod VM does not say where it came from"
	case c.HasLabel(factoryRequiredFact) && (served == 0 || served < len(vms)):
		so.OK, so.Detail = false, fmt.Sprintf("%s: this spec must run on %s VMs only", so.Detail, want)
	case served == 0 && misses > 0:
		so.OK, so.Detail = false, fmt.Sprintf("%s: no pod VM of this spec was %s", so.Detail, want)
	}
	return so
}

// describeVMs is "pod from (why)" for each VM, or what there was instead.
func describeVMs(vms []report.PodVM) string {
	if len(vms) == 0 {
		return "no pod VM of its own"
	}
	var parts []string
	for _, v := range vms {
		name := v.Pod[strings.IndexByte(v.Pod, '/')+1:]
		s := name + " " + v.From
		if v.Why != "" {
			s += " (" + v.Why + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// sizeWant parses the VM cache's "the pod needs AxB MiB, key K; ready:
// AxB MiB, key K; ..." (runtime/factory/cache Pool.Claim).
var (
	sizeWant  = regexp.MustCompile(`the pod needs (\d+x\d+ MiB), key (\w+); ready: (.*)`)
	sizeReady = regexp.MustCompile(`(\d+x\d+ MiB), key (\w+)`)
)

// bootWhy sorts a shim's reason for booting a VM of its own: by design
// when the factory does not serve such a pod (the cache holds VMs of one
// size and guest image: a pod of another size boots), a miss otherwise.
func bootWhy(mode, reason string) (why string, byDesign bool) {
	if mode == modeTemplate {
		if strings.Contains(reason, "another pod is saving this VM template") {
			return "template being saved by another pod", false
		}
		return "clone failed", false
	}
	switch {
	case strings.Contains(reason, "none ready"):
		return "pool empty", false
	case strings.Contains(reason, "the daemon that booted them is gone"):
		return "the pool's daemon is gone", false
	}
	m := sizeWant.FindStringSubmatch(reason)
	if m == nil {
		return "claim failed", false
	}
	sizes := map[string]bool{}
	for _, r := range sizeReady.FindAllStringSubmatch(m[3], -1) {
		if r[2] != m[2] {
			return "another guest image or VMM setting than the cache's", false
		}
		sizes[r[1]] = true
	}
	var have []string
	for s := range sizes {
		have = append(have, s)
	}
	sort.Strings(have)
	return fmt.Sprintf("by design: the pod needs %s, the cache's VMs are %s", m[1], strings.Join(have, ", ")), true
}
