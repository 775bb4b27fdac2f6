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
// sandbox of a cache class logs, before that, that it took a VM from the
// cache, or that it did not and why (then it boots its own).
const (
	msgReady    = `msg="pod VM ready"`
	msgTaken    = `msg="pod VM taken from the VM cache"`
	msgNotTaken = `msg="pod VM not taken from the VM cache: booting it"`
)

var (
	sandboxField = regexp.MustCompile(`\bsandbox=([0-9a-f]+)`)
	errorField   = regexp.MustCompile(`\berror="((?:[^"\\]|\\.)*)"`)
)

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

// cacheOrigin checks, from the shims' lines of one spec run on a cache
// class, that the run's pods really ran on VMs taken from the cache: every
// pod VM that became ready says where it came from (a pod that booted its
// own without saying so fails the check), and at least one was taken. A
// pod that booted its own is counted with its reason (another size than
// the cache's VMs, or none ready at that moment), not hidden.
func cacheOrigin(log string) *report.Check {
	taken, booted, ready := map[string]bool{}, map[string]string{}, map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		m := sandboxField.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch {
		case strings.Contains(line, msgTaken):
			taken[m[1]] = true
		case strings.Contains(line, msgNotTaken):
			booted[m[1]] = "no reason logged"
			if e := errorField.FindStringSubmatch(line); e != nil {
				booted[m[1]] = e[1]
			}
		case strings.Contains(line, msgReady):
			ready[m[1]] = true
		}
	}
	var silent []string
	for id := range ready {
		if !taken[id] && booted[id] == "" {
			silent = append(silent, short(id))
		}
	}
	sort.Strings(silent)
	detail := fmt.Sprintf("%d of %d pod VMs taken from the VM cache (the shim's %s)", len(taken), len(ready), msgTaken)
	if len(booted) > 0 {
		detail += fmt.Sprintf("; %d booted their own: %s", len(booted), countReasons(booted))
	}
	switch {
	case len(silent) > 0:
		return &report.Check{Detail: detail + "; pod VMs that do not say where they came from: " + strings.Join(silent, ", ")}
	case len(taken) == 0:
		return &report.Check{Detail: detail + "; no pod took a VM from the cache (is podvm factory serve running?)"}
	}
	return &report.Check{OK: true, Detail: detail}
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
