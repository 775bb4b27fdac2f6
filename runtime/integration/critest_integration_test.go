package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// critestSkip are the specs skipped with both handlers, because they
// depend on upstream image contents or the host, not on the runtime:
//   - HostIpc: runs ipcs in the container, and Debian's busybox-static has
//     no ipcs applet; the spec also leaves the shared memory segment it
//     makes on the host (ipcmk) behind.
//   - MaskedPaths: masks /bin/ls and expects `sh -c ls` to fail, but
//     Debian's busybox sh runs ls as a built-in applet without exec.
//   - with digest: pulls gcr.io/k8s-staging-cri-tools/test-image-digest by
//     the digest of the upstream build, which no local build can have.
const critestSkip = `HostIpc|MaskedPaths|with digest`

// knownDifferencesDoc lists the specs that may fail with podvm.
const knownDifferencesDoc = "../../docs/critest.md"

// TestCritestIntegration runs the CRI validation suite (critest v1.37.0)
// twice against one private containerd: with the runc handler, the
// reference, which must pass everything; then with the podvm handler,
// whose failures must all be listed in docs/critest.md. Subtests runc and
// podvm can be run alone (-run TestCritestIntegration/runc).
func TestCritestIntegration(t *testing.T) {
	if os.Getenv("PODVM_CRITEST") != "1" {
		t.Skip("set PODVM_CRITEST=1 to run critest with runc and podvm (about 10 min here; `make critest` does)")
	}
	env := requireEnv(t)
	tools := requireCRI(t)
	dir := t.TempDir()
	reports := critestReportDir(t)

	c := startCRI(t, env, tools)
	t.Logf("containerd %s", c.CRIEndpoint())

	runs := map[string]*critestRun{}
	for _, handler := range []string{"runc", "podvm"} {
		t.Run(handler, func(t *testing.T) {
			r := runCritest(t, c, tools, handler, filepath.Join(reports, handler), dir)
			runs[handler] = r
			t.Log(r.summary())
			reportLeaks(t, c, handler)
			if handler == "runc" {
				for _, name := range sortedKeys(r.Specs) {
					if r.failed(name) {
						t.Errorf("runc %s: %s\n    %s", r.Specs[name], name, r.Failures[name])
					}
				}
				return
			}
			checkPodvmRun(t, runs["runc"], r)
		})
	}
	for _, h := range []string{"runc", "podvm"} {
		if r := runs[h]; r != nil {
			t.Log(r.summary())
		}
	}
}

// checkPodvmRun fails on a podvm failure docs/critest.md does not list, and
// reports what passed with runc but not with podvm, and listed specs that
// pass now (to be taken off the list).
func checkPodvmRun(t *testing.T, runc, podvm *critestRun) {
	known, err := readKnownDifferences(knownDifferencesDoc)
	if err != nil {
		t.Fatalf("read the known differences: %v", err)
	}
	cmp := compare(runc, podvm, known)
	if runc != nil {
		t.Logf("%d specs passed with runc but not with podvm:%s", len(cmp.RegressedVsRunc), bullets(cmp.RegressedVsRunc, podvm.Specs))
	}
	if len(cmp.NowPassing) > 0 {
		t.Logf("%d specs listed in docs/critest.md now pass with podvm; take them off the list:%s", len(cmp.NowPassing), bullets(cmp.NowPassing, nil))
	}
	if len(cmp.Missing) > 0 {
		t.Logf("%d specs listed in docs/critest.md did not run (renamed or skipped?):%s", len(cmp.Missing), bullets(cmp.Missing, nil))
	}
	for _, name := range cmp.Unexpected {
		t.Errorf("podvm %s, and docs/critest.md does not list it: %s\n    %s", podvm.Specs[name], name, podvm.Failures[name])
	}
	p, f, s := podvm.counts()
	t.Logf("podvm against docs/critest.md: %d passed, %d failed, %d skipped; %d listed, %d unexpected, %d listed but passing",
		p, f, s, len(known), len(cmp.Unexpected), len(cmp.NowPassing))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func bullets(names []string, states map[string]string) string {
	var b strings.Builder
	for _, n := range names {
		if states != nil {
			fmt.Fprintf(&b, "\n  - [%s] %s", states[n], n)
		} else {
			fmt.Fprintf(&b, "\n  - %s", n)
		}
	}
	return b.String()
}

// critestReportDir is where each run's reports are kept after the test:
// $PODVM_CRITEST_REPORTS, else _output/critest of this repository.
func critestReportDir(t *testing.T) string {
	d := os.Getenv("PODVM_CRITEST_REPORTS")
	if d == "" {
		d = filepath.Join("..", "..", "_output", "critest")
	}
	d, err := filepath.Abs(d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runCritest runs critest with one runtime handler and reads its report.
// Its output goes to critest.log next to the reports, not to the test log.
func runCritest(t *testing.T, c *testContainerd, tools *criTools, handler, out, workDir string) *critestRun {
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(out, "critest.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := critestContext(t)
	defer cancel()
	args := []string{
		"-runtime-endpoint", c.CRIEndpoint(), "-image-endpoint", c.CRIEndpoint(),
		"-runtime-handler", handler,
		// No -parallel: the default runs one spec at a time (what 2 cores
		// and pod VMs under TCG want), and passing it, even as 1, makes
		// Ginkgo refuse to start ("Use of go test -parallel").
		"-ginkgo.skip", critestSkip,
		"-ginkgo.no-color",
		"-ginkgo.timeout", "6h", // the suite default (1h) is too short for podvm under TCG
		"-ginkgo.json-report", filepath.Join(out, "report.json"),
		"-ginkgo.junit-report", filepath.Join(out, "junit.xml"),
	}
	if focus := os.Getenv("PODVM_CRITEST_FOCUS"); focus != "" {
		// Only the specs whose names match (a regular expression); Ginkgo
		// reports the others skipped, so the comparison stays valid.
		args = append(args, "-ginkgo.focus", focus)
		t.Logf("critest focused on %q (PODVM_CRITEST_FOCUS)", focus)
	}
	cmd := exec.CommandContext(ctx, tools.Critest, args...)
	// At the deadline, interrupt: Ginkgo then still writes its reports.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	cmd.Dir = workDir
	cmd.Stdout, cmd.Stderr = logf, logf
	t.Logf("critest with handler %s (log %s)", handler, logPath)
	start := time.Now()
	runErr := cmd.Run()
	r := &critestRun{Handler: handler, Duration: time.Since(start), Dir: out}
	r.Specs, r.Failures, err = readCritestReport(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatalf("critest %s: %v; no report (%v). Log %s ends:\n%s", handler, runErr, err, logPath, hostbed.TailLines(logPath, 30))
	}
	if ctx.Err() != nil {
		t.Errorf("critest %s stopped at the test's deadline after %s", handler, r.Duration.Round(time.Second))
	}
	return r
}

// critestContext ends three minutes before the test's own deadline, so
// critest can write its reports and the cleanups still run.
func critestContext(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-3*time.Minute))
	}
	return context.WithCancel(context.Background())
}

// reportLeaks logs what the run left behind, then removes every pod left
// and looks again: what survives that is a leak of the runtime itself.
// After the runc run any leak is the harness's fault or containerd's and
// fails the test, and only what belongs to this containerd counts (other
// tests may run podvm on this host). After the podvm run every podvm
// process, mount and socket on the host is reported, for the pod-semantics
// work.
func reportLeaks(t *testing.T, c *testContainerd, handler string) {
	podvmMatch := c.Dir
	if handler == "podvm" {
		podvmMatch = ""
	}
	report := t.Logf
	if handler == "runc" {
		report = t.Errorf
	}
	leaks := waitForLeaks(c, podvmMatch)
	if len(leaks) == 0 {
		t.Logf("leak check after %s: nothing left", handler)
		return
	}
	report("leak check after %s: %d left behind by critest:\n  %s", handler, len(leaks), strings.Join(leaks, "\n  "))
	if err := c.RemoveAllPods(); err != nil {
		report("remove the pods left after %s: %v", handler, err)
	}
	if leaks = waitForLeaks(c, podvmMatch); len(leaks) > 0 {
		report("leak check after %s: %d still left after removing every pod:\n  %s", handler, len(leaks), strings.Join(leaks, "\n  "))
	} else {
		t.Logf("leak check after %s: nothing left once the pods critest left were removed", handler)
	}
}

// waitForLeaks gives shims and VMs up to 10 s to go after their pods.
func waitForLeaks(c *testContainerd, podvmMatch string) []string {
	var leaks []string
	for i := 0; i < 50; i++ {
		if leaks = append(c.CRILeaks(), hostbed.Leaks(podvmMatch)...); len(leaks) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return leaks
}
