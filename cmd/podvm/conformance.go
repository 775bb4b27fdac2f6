package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/conformance"
	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/cluster/existing"
	"github.com/podvm/podvm/conformance/cluster/local"
	"github.com/podvm/podvm/conformance/nodesuite"
	"github.com/podvm/podvm/conformance/report"
)

// conformanceOptions are the flags of `podvm conformance`.
type conformanceOptions struct {
	local                                                         local.Options
	providerName, kubeconfig, context, kubectl, classes, baseline string
	outDir                                                        string
	specBinary, labelFilter, e2eBinary, e2eFocus, critestCmd      string
	suites, nodeClasses, nodeFocus, nodeSkip                      string
	specArgs                                                      []string
	keep                                                          bool
	nodeProcs                                                     int
}

func newConformanceCommand() *cobra.Command {
	o := &conformanceOptions{local: local.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run the isolation specs and upstream suites against a cluster and write a report",
		Long: `Runs podvm's executable isolation specs once per runtime class (each baseline,
runc and the fake VM runc-fakevm, must fail every isolation spec for a shared-kernel
fact the spec declares; the VM classes must pass them all), the
upstream Kubernetes e2e RuntimeClass specs and, on the local provider, critest
with every CRI handler. --suites node-conformance adds the upstream
[sig-node] [Conformance] specs once per --node-runtime-classes, every pod they
create put on the class by a MutatingAdmissionPolicy, compared spec by spec
with the first class (runc). Writes report.md (a table of spec x runtime class) and
junit.xml to --out, and exits non-zero unless every result is the expected one.

Providers:
  local     a single-node Kubernetes from host processes ('podvm cluster up'),
            brought up if it is not running and taken down after (unless --keep)
  existing  any cluster: --kubeconfig, --runtime-classes and --baseline
            (e.g. --runtime-classes runc,kata --baseline runc)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, cmd.ErrOrStderr())
		},
	}
	o.addFlags(cmd)
	return cmd
}

func (o *conformanceOptions) addFlags(cmd *cobra.Command) {
	self, _ := os.Executable()
	f := cmd.Flags()
	enumVarP(f, &o.providerName, "provider", "", "local", []string{"local", "existing"}, "cluster provider")
	f.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of an existing cluster")
	f.StringVar(&o.context, "context", "", "kubeconfig context to use (default: the kubeconfig's current context)")
	f.StringVar(&o.kubectl, "kubectl", "kubectl", "kubectl binary (existing provider)")
	f.StringVar(&o.classes, "runtime-classes", "runc,runc-fakevm,podvm,podvm-template,podvm-cache", "runtime classes to run the specs with, comma-separated")
	f.StringVar(&o.baseline, "baseline", "runc,runc-fakevm", "the shared-kernel classes among them (comma-separated), on which every isolation spec must fail")
	f.StringVar(&o.outDir, "out", "_output/conformance", "directory for the report, JUnit and logs")
	f.StringVar(&o.specBinary, "spec-binary", filepath.Join(filepath.Dir(self), "podvm-spec.test"), "the compiled isolation specs (cd spec && go test -c)")
	f.StringVar(&o.labelFilter, "label-filter", "", "run only specs matching this Ginkgo label filter (e.g. 'kernel || limits')")
	f.StringArrayVar(&o.specArgs, "spec-arg", nil, "extra flag for the spec suite (repeatable), e.g. --spec-arg=--vmm-process-regex=qemu")
	f.StringVar(&o.e2eBinary, "e2e-binary", filepath.Join(o.local.KubeBinDir, "e2e.test"), "Kubernetes e2e.test binary; empty skips the upstream suite")
	f.StringVar(&o.e2eFocus, "e2e-focus", conformance.DefaultE2EFocus, "Ginkgo focus of the upstream suite")
	f.StringVar(&o.suites, "suites", strings.Join(conformance.DefaultSuites, ","), "suites to run, comma-separated: "+strings.Join(conformance.AllSuites, ", "))
	f.StringVar(&o.nodeClasses, "node-runtime-classes", "runc,podvm", "runtime classes for the node-conformance suite; the first is the baseline the others are compared with")
	f.StringVar(&o.nodeFocus, "node-focus", nodesuite.Focus, "Ginkgo focus of the node-conformance suite")
	f.StringVar(&o.nodeSkip, "node-skip", "", "Ginkgo skip of the node-conformance suite (e.g. '\\[Slow\\]')")
	f.IntVar(&o.nodeProcs, "node-procs", 1, "parallel processes of the node-conformance suite (more than 1 runs e2e.test through --ginkgo; [Serial] specs still run alone)")
	f.StringVar(&o.local.Ginkgo, "ginkgo", o.local.Ginkgo, "the Ginkgo CLI for --node-procs above 1, the version compiled into --e2e-binary")
	f.StringVar(&o.critestCmd, "critest-command", "", "command that runs critest with every handler (make conformance sets it); empty skips critest")
	f.BoolVar(&o.keep, "keep", false, "leave a local cluster this run brought up running")
	// The local cluster's own settings.
	f.StringVar(&o.local.Dir, "cluster-dir", o.local.Dir, "state directory of the local cluster")
	f.StringVar(&o.local.PodvmPrefix, "prefix", o.local.PodvmPrefix, "where podvm is installed for the local cluster")
	f.IntVar(&o.local.CachePool, "cache-pool", o.local.CachePool, "VM cache pool of class podvm-cache on the local cluster (-1: config-cache.toml's cache_size)")
	aliasFlag(f, "podvm-prefix", "prefix")
	f.StringVar(&o.local.Testbin, "testbin", o.local.Testbin, "podvm's testbin program (the pause image)")
	f.StringVar(&o.local.FakeVMRunc, "fakevm-runc", o.local.FakeVMRunc, "the fake-VM baseline's runc wrapper (runc-fakevm handler)")
}

// provider is the cluster provider --provider names, and its description
// for the report.
func (o *conformanceOptions) provider() (cluster.Provider, string, error) {
	switch o.providerName {
	case "local":
		return local.New(o.local), "local: Kubernetes " + local.KubernetesVersion + " from host processes, containerd " + local.ContainerdVersion, nil
	case "existing":
		return &existing.Provider{Kubeconfig: o.kubeconfig, Kubectl: o.kubectl, Classes: strings.Split(o.classes, ",")}, "existing: " + o.kubeconfig, nil
	default:
		return nil, "", fmt.Errorf("unknown provider %q (local or existing; kind clusters are used as existing ones, see docs/conformance.md)", o.providerName)
	}
}

// pinContext replaces --kubeconfig with a copy holding only --context
// (kubectl config view --minify --flatten), so that every suite, kubectl
// and the spec binary alike, talks to that context's cluster.
func (o *conformanceOptions) pinContext(ctx context.Context) error {
	if o.context == "" {
		return nil
	}
	if o.providerName != "existing" {
		return usageErrorf("--context %q: only the existing provider takes a kubeconfig", o.context)
	}
	args := []string{"config", "view", "--minify", "--flatten", "--context", o.context}
	if o.kubeconfig != "" {
		args = append([]string{"--kubeconfig", o.kubeconfig}, args...)
	}
	b, err := exec.CommandContext(ctx, o.kubectl, args...).Output()
	if err != nil {
		return fmt.Errorf("kubeconfig of context %q: %w", o.context, err)
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	o.kubeconfig = filepath.Join(o.outDir, "kubeconfig-"+strings.NewReplacer("/", "_", ":", "_").Replace(o.context))
	return os.WriteFile(o.kubeconfig, b, 0o600)
}

// suiteOptions are the conformance run's options on cluster c.
func (o *conformanceOptions) suiteOptions(c *cluster.Cluster, desc string, out io.Writer) conformance.Options {
	opts := conformance.Options{
		Cluster: c, ClusterDesc: desc, Classes: strings.Split(o.classes, ","), Baselines: o.baselines(), OutDir: o.outDir,
		SpecBinary: o.specBinary, SpecLabelFilter: o.labelFilter, SpecArgs: o.specArgs,
		E2EBinary: o.e2eBinary, E2EFocus: o.e2eFocus, Progress: out,
		Suites: strings.Split(o.suites, ","), NodeClasses: strings.Split(o.nodeClasses, ","),
		NodeFocus: o.nodeFocus, NodeSkip: o.nodeSkip, Kubectl: o.kubectl, NodeProcs: o.nodeProcs, Ginkgo: o.local.Ginkgo,
	}
	if o.providerName == "local" {
		opts.Kubectl = filepath.Join(o.local.KubeBinDir, "kubectl")
	}
	if o.critestCmd != "" {
		opts.CritestCommand = strings.Fields(o.critestCmd)
	}
	return opts
}

// baselines are the classes --baseline names.
func (o *conformanceOptions) baselines() []string {
	if o.baseline == "" {
		return nil
	}
	return strings.Split(o.baseline, ",")
}

// run brings the cluster up if needed, runs the suites, adds the cluster's
// health, and says whether every result is the expected one.
func (o *conformanceOptions) run(ctx context.Context, out io.Writer) error {
	if err := o.checkSuites(); err != nil {
		return err
	}
	if err := o.pinContext(ctx); err != nil {
		return err
	}
	p, desc, err := o.provider()
	if err != nil {
		return err
	}
	c, broughtUp, err := ensureUp(ctx, p, out)
	if err != nil {
		return err
	}
	if broughtUp && !o.keep {
		defer func() {
			if err := p.Down(context.WithoutCancel(ctx), out); err != nil {
				fmt.Fprintf(out, "podvm: taking the cluster down: %v\n", err)
			}
		}()
	}
	opts := o.suiteOptions(c, desc, out)
	if _, err := os.Stat(opts.SpecBinary); err != nil && slices.Contains(opts.Suites, conformance.SuiteIsolation) {
		return prerequisiteErrorf("spec suite %s: %w (build it: cd spec && go test -c -o %s .)", opts.SpecBinary, err, opts.SpecBinary)
	}
	rep, err := conformance.Run(ctx, opts)
	if err != nil {
		return err
	}
	if err := o.addClusterHealth(ctx, p, rep); err != nil {
		return err
	}
	return o.verdict(rep, out)
}

// checkSuites checks the suites and their classes before a cluster is
// brought up: a run without its baseline would pass isolation specs that
// nothing shows can fail, and the node suite compares with its first class.
func (o *conformanceOptions) checkSuites() error {
	suites := strings.Split(o.suites, ",")
	if err := conformance.CheckSuites(suites); err != nil {
		return fmt.Errorf("--suites %q: %w", o.suites, err)
	}
	if slices.Contains(suites, conformance.SuiteIsolation) {
		if err := report.CheckClasses(strings.Split(o.classes, ","), o.baselines()); err != nil {
			return fmt.Errorf("--runtime-classes %q, --baseline %q: %w", o.classes, o.baseline, err)
		}
	}
	if slices.Contains(suites, conformance.SuiteNodeConformance) {
		if o.e2eBinary == "" || len(strings.Split(o.nodeClasses, ",")) < 2 {
			return usageErrorf("--suites node-conformance needs --e2e-binary and at least two --node-runtime-classes (a baseline first), got %q", o.nodeClasses)
		}
		if o.nodeProcs < 1 {
			return usageErrorf("--node-procs %d: want 1 or more", o.nodeProcs)
		}
		if o.nodeProcs > 1 {
			if _, err := os.Stat(o.local.Ginkgo); err != nil {
				return fmt.Errorf("--node-procs %d needs the Ginkgo CLI: %w (build it with ci/install-tools.sh ginkgo, or name it with --ginkgo)", o.nodeProcs, err)
			}
		}
	}
	return nil
}

// addClusterHealth adds the cluster's health to rep and rewrites the
// report: a process of the cluster that died during the run is a failure
// even if every spec passed.
func (o *conformanceOptions) addClusterHealth(ctx context.Context, p cluster.Provider, rep *report.Report) error {
	st, err := p.Status(ctx)
	if err != nil {
		return nil
	}
	check := &report.Check{OK: st.Healthy(), Detail: "every cluster process still running and the node Ready after the suites"}
	if !st.Healthy() {
		check.Detail = "cluster unhealthy after the suites:\n" + st.String()
	}
	rep.Runs = append(rep.Runs, report.Run{Suite: "cluster health", Checked: check})
	return conformance.WriteReport(rep, o.outDir)
}

// verdict prints where the report is and fails unless every result is
// the expected one.
func (o *conformanceOptions) verdict(rep *report.Report, out io.Writer) error {
	fmt.Fprintf(out, "==> report: %s (JUnit: %s)\n", filepath.Join(o.outDir, "report.md"), filepath.Join(o.outDir, "junit.xml"))
	skips := rep.Skips()
	for _, s := range skips {
		fmt.Fprintf(out, "    skipped where a pass is wanted: %s: %s: %s\n", s.Run, s.Case, s.Message)
	}
	if !rep.OK() {
		for _, u := range rep.Unexpected() {
			fmt.Fprintf(out, "    unexpected: %s: %s: %s\n", u.Run, u.Case, u.What())
		}
		return fmt.Errorf("conformance FAILED: %d unexpected result(s), %d skipped, see %s", len(rep.Unexpected()), len(skips), filepath.Join(o.outDir, "report.md"))
	}
	if len(skips) > 0 {
		fmt.Fprintf(out, "==> conformance PASSED with %d skipped (not counted as passes): every result that ran is the expected one\n", len(skips))
		return nil
	}
	fmt.Fprintln(out, "==> conformance PASSED: every result is the expected one")
	return nil
}

// ensureUp reuses a healthy local cluster or brings one up; broughtUp
// says whether this run started it (and so takes it down).
func ensureUp(ctx context.Context, p cluster.Provider, out io.Writer) (*cluster.Cluster, bool, error) {
	if lp, ok := p.(*local.Provider); ok {
		if st, err := lp.Status(ctx); err == nil && st.Healthy() {
			fmt.Fprintln(out, "==> using the local cluster that is already running")
			return lp.Cluster(), false, nil
		}
	}
	c, err := p.Up(ctx, out)
	if err != nil {
		return nil, false, err
	}
	_, isLocal := p.(*local.Provider)
	return c, isLocal, nil
}
