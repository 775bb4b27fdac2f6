package conformance

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podvm/podvm/conformance/cluster"
)

// One process runs e2e.test with Ginkgo's flags in its own form; more run
// the Ginkgo CLI, whose flags have no prefix and come before the binary,
// and the suite's own flags after "--".
func TestNodeSuiteCommand(t *testing.T) {
	base := Options{Cluster: &cluster.Cluster{Kubeconfig: "/k"}, E2EBinary: "/bin/e2e.test", Ginkgo: "/bin/ginkgo",
		NodeFocus: "F", NodeSkip: "S"}
	for _, tc := range []struct {
		procs     int
		bin, args string
	}{
		{0, "/bin/e2e.test", "--kubeconfig /k --provider skeleton --report-dir /d --dump-logs-on-failure=false --ginkgo.focus F --ginkgo.no-color --ginkgo.v --ginkgo.timeout 4h --ginkgo.junit-report /d/j.xml --ginkgo.skip S"},
		{1, "/bin/e2e.test", "--kubeconfig /k --provider skeleton --report-dir /d --dump-logs-on-failure=false --ginkgo.focus F --ginkgo.no-color --ginkgo.v --ginkgo.timeout 4h --ginkgo.junit-report /d/j.xml --ginkgo.skip S"},
		{3, "/bin/ginkgo", "run --procs 3 --focus F --no-color -v --timeout 4h --output-dir /d --junit-report j.xml --skip S /bin/e2e.test -- --kubeconfig /k --provider skeleton --report-dir /d --dump-logs-on-failure=false"},
	} {
		o := base
		o.NodeProcs = tc.procs
		bin, args := nodeSuiteCommand(o, "/d", "/d/j.xml")
		if bin != tc.bin || strings.Join(args, " ") != tc.args {
			t.Errorf("procs %d: got %s %s\nwant %s %s", tc.procs, bin, strings.Join(args, " "), tc.bin, tc.args)
		}
	}
	o := base
	o.NodeSkip = ""
	if _, args := nodeSuiteCommand(o, "/d", "/d/j.xml"); slices.Contains(args, "--ginkgo.skip") {
		t.Errorf("an empty skip must not be passed: %v", args)
	}
}

// TestNoCasesError: a suite killed before any selected spec finished must
// not read as a focus that matched nothing (Ginkgo's report of an
// interrupted run holds only skipped specs).
func TestNoCasesError(t *testing.T) {
	log := filepath.Join(t.TempDir(), "e2e.log")
	if err := os.WriteFile(log, []byte("Running Suite\nReceived interrupt.  Running AfterSuite...\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{NodeFocus: "Pod InPlace Resize", NodeSkip: "Serial"}
	tests := []struct {
		name   string
		runErr error
		want   []string
		not    string
	}{
		{"killed", errors.New("ginkgo: signal: interrupt"), []string{"signal: interrupt", "before any selected spec finished", "Received interrupt"}, "no spec matched"},
		{"nothing matched", nil, []string{`no spec matched focus "Pod InPlace Resize" (skip "Serial")`}, "before any"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := noCasesError(o, tt.runErr, log).Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, tt.not) {
				t.Errorf("error %q says %q", msg, tt.not)
			}
		})
	}
}
