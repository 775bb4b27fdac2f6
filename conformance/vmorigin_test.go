package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/conformance/report"
)

// Lines as containerd's log has them (logfmt, from a cluster run).
const (
	lineTaken    = `time="2026-12-07T20:52:40Z" level=info msg="pod VM taken from the VM cache" cached_vm=1f5c96f7 runtime=io.containerd.podvm.v2 sandbox=aaaa1111aaaa1111`
	lineNotTaken = `time="2026-12-07T20:52:41Z" level=warning msg="pod VM not taken from the VM cache: booting it" error="no cached VM for this pod: the pod needs 1x384 MiB; ready: 1x256 MiB, key k" runtime=io.containerd.podvm.v2 sandbox=bbbb2222bbbb2222`
	lineNoneNote = `time="2026-12-07T20:52:42Z" level=warning msg="pod VM not taken from the VM cache: booting it" error="no cached VM for this pod: none ready (2 booting)" runtime=io.containerd.podvm.v2 sandbox=dddd4444dddd4444`
)

func ready(id string) string {
	return `time="2026-12-07T20:52:43Z" level=info msg="pod VM ready" boot_to_agent=113ms runtime=io.containerd.podvm.v2 sandbox=` + id
}

func TestCacheOrigin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lines  []string
		ok     bool
		detail []string
	}{
		{name: "every pod took a cached VM", lines: []string{lineTaken, ready("aaaa1111aaaa1111")}, ok: true,
			detail: []string{"1 of 1 pod VMs taken from the VM cache"}},
		{name: "a pod of another size boots its own, said and counted",
			lines: []string{lineTaken, ready("aaaa1111aaaa1111"), lineNotTaken, ready("bbbb2222bbbb2222"), lineNoneNote, ready("dddd4444dddd4444")}, ok: true,
			detail: []string{"1 of 3 pod VMs taken", "2 booted their own: 1: no cached VM for this pod: none ready (2 booting); 1: no cached VM for this pod: the pod needs 1x384 MiB"}},
		{name: "a pod VM that does not say where it came from", lines: []string{lineTaken, ready("aaaa1111aaaa1111"), ready("cccc3333cccc3333cccc")},
			detail: []string{"do not say where they came from: cccc3333cccc"}},
		{name: "no daemon: every pod booted", lines: []string{lineNoneNote, ready("dddd4444dddd4444")},
			detail: []string{"0 of 1", "no pod took a VM from the cache"}},
		{name: "no pod at all", detail: []string{"0 of 0", "no pod took a VM from the cache"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheOrigin(strings.Join(tc.lines, "\n"))
			if c.OK != tc.ok {
				t.Errorf("OK = %v, want %v: %s", c.OK, tc.ok, c.Detail)
			}
			for _, d := range tc.detail {
				if !strings.Contains(c.Detail, d) {
					t.Errorf("detail %q lacks %q", c.Detail, d)
				}
			}
		})
	}
}

// A run's lines are the ones written after its start, and a failed origin
// check is an unexpected result although every spec passed.
func TestCacheOriginOfOneRun(t *testing.T) {
	log := filepath.Join(t.TempDir(), "containerd.log")
	if err := os.WriteFile(log, []byte(lineTaken+"\n"+ready("aaaa1111aaaa1111")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	off := logOffset(log)
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(ready("eeee5555eeee5555") + "\n")
	f.Close()
	text, err := logSince(log, off)
	if err != nil {
		t.Fatal(err)
	}
	c := cacheOrigin(text)
	if c.OK || !strings.Contains(c.Detail, "0 of 1") {
		t.Fatalf("check of the second run's lines only: %+v", c)
	}
	rep := &report.Report{Runs: []report.Run{
		{Suite: "s", RuntimeClass: "runc", Baseline: true, Cases: []report.Case{{Name: "x", Outcome: report.Passed}}},
		{Suite: "s", RuntimeClass: "podvm-cache", Cases: []report.Case{{Name: "x", Outcome: report.Passed}}, Origin: c},
	}}
	var found bool
	for _, u := range rep.Unexpected() {
		found = found || (u.Case == "(pod VMs' origin)" && strings.Contains(u.Run, "podvm-cache"))
	}
	if !found {
		t.Errorf("a failed origin check is not among the unexpected results: %+v", rep.Unexpected())
	}
}
