package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/drivers"
)

// checkResult is one line of `podvm check`, as -o json|yaml prints it.
type checkResult struct {
	Name   string `json:"name" yaml:"name"`
	Status string `json:"status" yaml:"status"` // ok, fallback or missing
	Detail string `json:"detail" yaml:"detail"`
	Fix    string `json:"fix,omitempty" yaml:"fix,omitempty"`
}

// checkReport is the whole of `podvm check -o json|yaml`.
type checkReport struct {
	Config  []config.Source `json:"config" yaml:"config"`
	OK      bool            `json:"ok" yaml:"ok"`
	Results []checkResult   `json:"results" yaml:"results"`
}

func newCheckCommand() *cobra.Command {
	var f configFlags
	var output string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Report what this host can do for podvm, with a fix for each missing piece",
		Long: `Checks the configuration the shim would use (resolved as 'podvm config show'
says, and named in the first line), the guest image, the VMM and its helpers,
the accelerator (hardware KVM or TCG software emulation) and the agent channel
(vsock or virtio-serial). Exits 3 when a pod VM could not start here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep := runChecks(cmd, &f)
			if output != outputText {
				if err := writeOutput(cmd.OutOrStdout(), output, rep); err != nil {
					return err
				}
			} else {
				printChecks(cmd.OutOrStdout(), rep.Results)
			}
			if !rep.OK {
				return prerequisite(fmt.Errorf("%d check(s) failed: pod VMs cannot start on this host until they are fixed", rep.failed()))
			}
			return nil
		},
	}
	f.add(cmd)
	outputFlag(cmd, &output, outputJSON, outputYAML)
	return cmd
}

func printChecks(out io.Writer, results []checkResult) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, r := range results {
		mark := r.Status
		if mark == "missing" {
			mark = "MISSING"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", mark, r.Name, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(w, "\t\tfix: %s\n", r.Fix)
		}
	}
	w.Flush()
}

func (r checkReport) failed() int {
	n := 0
	for _, c := range r.Results {
		if c.Status == "missing" {
			n++
		}
	}
	return n
}

func runChecks(cmd *cobra.Command, f *configFlags) checkReport {
	e, err := f.resolve()
	if err != nil {
		return checkReport{Config: []config.Source{}, Results: []checkResult{{Name: "config", Status: "missing", Detail: err.Error(),
			Fix: "correct the file, or see `podvm config default` and `podvm config show`"}}}
	}
	cfg := e.Config
	results := []hypervisor.CheckResult{{Name: "config", OK: true, Detail: e.Describe()}}
	for _, f := range []struct{ name, path string }{{"guest kernel", cfg.Hypervisor.Kernel}, {"guest initramfs", cfg.Hypervisor.Initrd}} {
		r := hypervisor.CheckResult{Name: f.name, Detail: f.path}
		if _, err := os.Stat(f.path); err == nil {
			r.OK = true
		} else {
			r.Detail = fmt.Sprintf("%s not found", f.path)
			r.Fix = "run `podvm image build --image-dir <dir>` and point hypervisor.kernel/initrd at it (or `podvm install`)"
		}
		results = append(results, r)
	}
	driver, err := drivers.New(cfg)
	if err != nil {
		results = append(results, hypervisor.CheckResult{Name: "hypervisor driver", Detail: err.Error()})
	} else {
		results = append(results, driver.Check(cmd.Context())...)
	}
	rep := checkReport{Config: e.Sources, OK: true}
	for _, r := range results {
		c := checkResult{Name: r.Name, Status: "ok", Detail: r.Detail}
		if !r.OK {
			c.Status, c.Fix = "fallback", r.Fix
			if !r.Optional {
				c.Status, rep.OK = "missing", false
			}
		}
		rep.Results = append(rep.Results, c)
	}
	return rep
}
