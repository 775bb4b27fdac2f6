package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/conformance"
	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/cluster/existing"
	"github.com/podvm/podvm/conformance/cluster/local"
	"github.com/podvm/podvm/conformance/report"
)

func newConformanceCommand() *cobra.Command {
	lopts := local.DefaultOptions()
	var (
		providerName, kubeconfig, kubectl, classes, baseline, outDir string
		specBinary, labelFilter, e2eBinary, e2eFocus, critestCmd     string
		specArgs                                                     []string
		keep                                                         bool
	)
	self, _ := os.Executable()
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run the isolation specs and upstream suites against a cluster and write a report",
		Long: `Runs podvm's executable isolation specs once per runtime class (the baseline,
runc, must fail every isolation spec; the VM classes must pass them all), the
upstream Kubernetes e2e RuntimeClass specs and, on the local provider, critest
with every CRI handler. Writes report.md (a table of spec x runtime class) and
junit.xml to --out, and exits non-zero unless every result is the expected one.

Providers:
  local     a single-node Kubernetes from host processes ('podvm cluster up'),
            brought up if it is not running and taken down after (unless --keep)
  existing  any cluster: --kubeconfig and --runtime-classes (e.g. "runc,kata")`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.ErrOrStderr()
			classList := strings.Split(classes, ",")
			var p cluster.Provider
			desc := ""
			switch providerName {
			case "local":
				p = local.New(lopts)
				desc = "local: Kubernetes " + local.KubernetesVersion + " from host processes, containerd " + local.ContainerdVersion
			case "existing":
				p = &existing.Provider{Kubeconfig: kubeconfig, Kubectl: kubectl, Classes: classList}
				desc = "existing: " + kubeconfig
			default:
				return fmt.Errorf("unknown provider %q (local or existing; kind clusters are used as existing ones, see docs/conformance.md)", providerName)
			}
			c, broughtUp, err := ensureUp(ctx, p, out)
			if err != nil {
				return err
			}
			if broughtUp && !keep {
				defer func() {
					if err := p.Down(context.WithoutCancel(ctx), out); err != nil {
						fmt.Fprintf(out, "podvm: taking the cluster down: %v\n", err)
					}
				}()
			}
			o := conformance.Options{
				Cluster: c, ClusterDesc: desc, Classes: classList, Baseline: baseline, OutDir: outDir,
				SpecBinary: specBinary, SpecLabelFilter: labelFilter, SpecArgs: specArgs,
				E2EBinary: e2eBinary, E2EFocus: e2eFocus, Progress: out,
			}
			if critestCmd != "" {
				o.CritestCommand = strings.Fields(critestCmd)
			}
			if _, err := os.Stat(o.SpecBinary); err != nil {
				return fmt.Errorf("spec suite %s: %w (build it: cd spec && go test -c -o %s .)", o.SpecBinary, err, o.SpecBinary)
			}
			rep, err := conformance.Run(ctx, o)
			if err != nil {
				return err
			}
			// A process of the cluster that died during the run is a
			// failure even if every spec passed.
			if st, err := p.Status(ctx); err == nil {
				check := &report.Check{OK: st.Healthy(), Detail: "every cluster process still running and the node Ready after the suites"}
				if !st.Healthy() {
					check.Detail = "cluster unhealthy after the suites:\n" + st.String()
				}
				rep.Runs = append(rep.Runs, report.Run{Suite: "cluster health", Checked: check})
				if err := conformance.WriteReport(rep, outDir); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "==> report: %s (JUnit: %s)\n", filepath.Join(outDir, "report.md"), filepath.Join(outDir, "junit.xml"))
			if !rep.OK() {
				for _, u := range rep.Unexpected() {
					fmt.Fprintf(out, "    unexpected: %s: %s: got %s, want %s\n", u.Run, u.Case, u.Got, u.Want)
				}
				return fmt.Errorf("conformance FAILED: %d unexpected result(s), see %s", len(rep.Unexpected()), filepath.Join(outDir, "report.md"))
			}
			fmt.Fprintln(out, "==> conformance PASSED: every result is the expected one")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&providerName, "provider", "local", "cluster provider: local or existing")
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of an existing cluster")
	f.StringVar(&kubectl, "kubectl", "kubectl", "kubectl binary (existing provider)")
	f.StringVar(&classes, "runtime-classes", "runc,podvm", "runtime classes to run the specs with, comma-separated")
	f.StringVar(&baseline, "baseline", "runc", "the shared-kernel class among them, on which isolation specs must fail")
	f.StringVar(&outDir, "out", "_output/conformance", "directory for the report, JUnit and logs")
	f.StringVar(&specBinary, "spec-binary", filepath.Join(filepath.Dir(self), "podvm-spec.test"), "the compiled isolation specs (cd spec && go test -c)")
	f.StringVar(&labelFilter, "label-filter", "", "run only specs matching this Ginkgo label filter (e.g. 'kernel || limits')")
	f.StringArrayVar(&specArgs, "spec-arg", nil, "extra flag for the spec suite (repeatable), e.g. --spec-arg=--vmm-process-regex=qemu")
	f.StringVar(&e2eBinary, "e2e-binary", filepath.Join(lopts.KubeBinDir, "e2e.test"), "Kubernetes e2e.test binary; empty skips the upstream suite")
	f.StringVar(&e2eFocus, "e2e-focus", conformance.DefaultE2EFocus, "Ginkgo focus of the upstream suite")
	f.StringVar(&critestCmd, "critest-command", "", "command that runs critest with every handler (make conformance sets it); empty skips critest")
	f.BoolVar(&keep, "keep", false, "leave a local cluster this run brought up running")
	// The local cluster's own settings.
	f.StringVar(&lopts.Dir, "cluster-dir", lopts.Dir, "state directory of the local cluster")
	f.StringVar(&lopts.PodvmPrefix, "podvm-prefix", lopts.PodvmPrefix, "where podvm is installed for the local cluster")
	f.StringVar(&lopts.Testbin, "testbin", lopts.Testbin, "podvm's testbin program (the pause image)")
	return cmd
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
