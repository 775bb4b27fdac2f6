package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/drivers"
)

func newCheckCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Report what this host can do for podvm, with a fix for each missing piece",
		Long: `Checks the configuration, the guest image, the VMM and its helpers, the
accelerator (hardware KVM or TCG software emulation) and the agent channel
(vsock or virtio-serial). Exits non-zero when a pod VM could not start here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			results, fatal := runChecks(cmd, configPath)
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			for _, r := range results {
				mark := "ok"
				switch {
				case !r.OK && r.Optional:
					mark = "fallback"
				case !r.OK:
					mark = "MISSING"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", mark, r.Name, r.Detail)
				if !r.OK && r.Fix != "" {
					fmt.Fprintf(w, "\t\tfix: %s\n", r.Fix)
				}
			}
			w.Flush()
			if fatal > 0 {
				return fmt.Errorf("%d check(s) failed: pod VMs cannot start on this host until they are fixed", fatal)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", config.DefaultPath, "podvm configuration file")
	return cmd
}

func runChecks(cmd *cobra.Command, configPath string) ([]hypervisor.CheckResult, int) {
	var results []hypervisor.CheckResult
	cfg, err := config.Load(configPath)
	if err != nil {
		return []hypervisor.CheckResult{{Name: "config", Detail: err.Error(), Fix: "correct the file, or see `podvm config default`"}}, 1
	}
	results = append(results, hypervisor.CheckResult{Name: "config", OK: true, Detail: configPath})
	for _, f := range []struct{ name, path string }{{"guest kernel", cfg.Hypervisor.Kernel}, {"guest initramfs", cfg.Hypervisor.Initrd}} {
		r := hypervisor.CheckResult{Name: f.name, Detail: f.path}
		if _, err := os.Stat(f.path); err == nil {
			r.OK = true
		} else {
			r.Detail = fmt.Sprintf("%s not found", f.path)
			r.Fix = "run `podvm image build --out <dir>` and point hypervisor.kernel/initrd at it (or `podvm install`)"
		}
		results = append(results, r)
	}
	driver, err := drivers.New(cfg)
	if err != nil {
		results = append(results, hypervisor.CheckResult{Name: "hypervisor driver", Detail: err.Error()})
	} else {
		results = append(results, driver.Check(cmd.Context())...)
	}
	fatal := 0
	for _, r := range results {
		if !r.OK && !r.Optional {
			fatal++
		}
	}
	return results, fatal
}
