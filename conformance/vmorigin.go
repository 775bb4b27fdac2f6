package conformance

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/podvm/podvm/conformance/report"
)

// The shim's lines (runtime/sandbox, runtime/shim/task) that say where a
// pod VM came from: every podvm sandbox logs "pod VM ready" once; a
// sandbox of a factory class logs, before that, that it took a VM from the
// cache or cloned one from a template, or that it did not and why (then it
// boots its own).
const (
	msgReady     = `msg="pod VM ready"`
	msgTaken     = `msg="pod VM taken from the VM cache"`
	msgNotTaken  = `msg="pod VM not taken from the VM cache: booting it"`
	msgCloned    = `msg="pod VM cloned from a VM template"`
	msgNotCloned = `msg="pod VM not cloned from a VM template: booting it"`
	// containerd's CRI line for a new sandbox names the pod (its
	// PodSandboxMetadata) and the sandbox id the shim logs as "sandbox".
	msgRunPod = `msg="RunPodSandbox for `
)

// The factory modes a class's pod VMs come from (config factory.mode).
const (
	modeCache    = "cache"
	modeTemplate = "template"
)

// Where a pod VM came from (report.PodVM.From).
const (
	fromCache    = "cached"
	fromTemplate = "cloned"
	fromBoot     = "booted"
	fromUnsaid   = "unsaid"
)

var (
	sandboxField = regexp.MustCompile(`\bsandbox=([0-9a-f]+)`)
	errorField   = regexp.MustCompile(`\berror="((?:[^"\\]|\\.)*)"`)
	criPodName   = regexp.MustCompile(`\bname:\\"([^"\\]*)\\"`)
	criPodNS     = regexp.MustCompile(`\bnamespace:\\"([^"\\]*)\\"`)
	criSandbox   = regexp.MustCompile(`returns sandbox id \\"([0-9a-f]+)\\"`)
)

// podVM is what one run's log says of one sandbox.
type podVM struct {
	id    string
	pod   string // namespace/name, from containerd's CRI line
	seq   int    // order of first mention
	ready bool
	from  string // fromCache, fromTemplate, fromBoot; "" when unsaid
	// reason is the shim's error for a VM it booted.
	reason string
}

// isVM tells whether the sandbox was a podvm pod VM: the shim logged it
// ready or said where it came from (a runc pod, such as the node probe,
// has neither).
func (v *podVM) isVM() bool { return v.ready || v.from != "" }

// readPodVMs reads the sandboxes of one run's lines of containerd's log.
func readPodVMs(log string) map[string]*podVM {
	vms := map[string]*podVM{}
	get := func(id string) *podVM {
		if vms[id] == nil {
			vms[id] = &podVM{id: id, seq: len(vms)}
		}
		return vms[id]
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, msgRunPod) {
			id, name, ns := criSandbox.FindStringSubmatch(line), criPodName.FindStringSubmatch(line), criPodNS.FindStringSubmatch(line)
			if id != nil && name != nil && ns != nil {
				get(id[1]).pod = ns[1] + "/" + name[1]
			}
			continue
		}
		m := sandboxField.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch {
		case strings.Contains(line, msgTaken):
			get(m[1]).from = fromCache
		case strings.Contains(line, msgCloned):
			get(m[1]).from = fromTemplate
		case strings.Contains(line, msgNotTaken), strings.Contains(line, msgNotCloned):
			v := get(m[1])
			v.from, v.reason = fromBoot, "no reason logged"
			if e := errorField.FindStringSubmatch(line); e != nil {
				v.reason = strings.ReplaceAll(e[1], `\"`, `"`)
			}
		case strings.Contains(line, msgReady):
			get(m[1]).ready = true
		}
	}
	return vms
}

// cacheOrigin checks, from the shims' lines of one spec run on a cache
// class, that the run's pods really ran on VMs taken from the cache.
func cacheOrigin(log string) *report.Check { return factoryOrigin(modeCache, readPodVMs(log)) }

// factoryOrigin totals a factory class's run: every pod VM that became
// ready says where it came from (a pod that booted its own without saying
// so fails the check), and at least one came from the factory. A pod that
// booted its own is counted with its reason (another size than the
// cache's VMs, none ready at that moment, a failed clone), not hidden.
func factoryOrigin(mode string, vms map[string]*podVM) *report.Check {
	want, what := fromCache, "taken from the VM cache (the shim's "+msgTaken+")"
	if mode == modeTemplate {
		want, what = fromTemplate, "cloned from a VM template (the shim's "+msgCloned+")"
	}
	served, ready := 0, 0
	booted := map[string]string{}
	var silent []string
	for id, v := range vms {
		switch {
		case v.from == want:
			served++
		case v.from == fromBoot:
			booted[id] = v.reason
		case v.ready:
			silent = append(silent, short(id))
		}
		if v.ready {
			ready++
		}
	}
	sort.Strings(silent)
	detail := fmt.Sprintf("%d of %d pod VMs %s", served, ready, what)
	if len(booted) > 0 {
		detail += fmt.Sprintf("; %d booted their own: %s", len(booted), countReasons(booted))
	}
	switch {
	case len(silent) > 0:
		return &report.Check{Detail: detail + "; pod VMs that do not say where they came from: " + strings.Join(silent, ", ")}
	case served == 0 && mode == modeTemplate:
		return &report.Check{Detail: detail + "; no pod VM was cloned from a template"}
	case served == 0:
		return &report.Check{Detail: detail + "; no pod took a VM from the cache (is podvm factory serve running?)"}
	}
	return &report.Check{OK: true, Detail: detail}
}

// logOffset is the size of the shims' log now: a spec run's lines are the
// ones after it.
func logOffset(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince is the text of the log at path from offset on.
func logSince(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}

// countReasons is "n: reason" for each distinct reason, sorted.
func countReasons(byPod map[string]string) string {
	n := map[string]int{}
	for _, r := range byPod {
		n[r]++
	}
	var parts []string
	for r, c := range n {
		parts = append(parts, fmt.Sprintf("%d: %s", c, r))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
