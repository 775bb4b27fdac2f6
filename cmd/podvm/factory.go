package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/factory/cache"
	"github.com/podvm/podvm/runtime/hypervisor/drivers"
	"github.com/podvm/podvm/runtime/sandbox/factory"
)

func newFactoryCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "factory",
		Short: "Manage the VM factory: templates and the VM cache (docs/factory.md)",
		Long: `With [factory] mode = "template" each pod VM is a clone of a VM template saved
under template_dir by the first pod of its size and guest image; one holder
process per template (podvm-template-hold) keeps its RAM in a sealed memfd
between pods. With mode = "cache" each pod takes a VM that 'podvm factory
serve' booted ahead.`,
	}
	cmd.AddCommand(newFactoryCleanCommand(), newFactoryServeCommand())
	return cmd
}

func newFactoryCleanCommand() *cobra.Command {
	var f configFlags
	var dir string
	cmd := &cobra.Command{
		Use:   "clean",
		Short: "Stop the templates' holders and remove template_dir",
		Long: `Stops the holder of every VM template and removes template_dir (from the
configuration, or --template-dir). Running pods keep their VMs; the next pod
of a template mode saves a new template. A template a pod is saving right now
is left, and the command fails saying so: run it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				e, err := f.resolve()
				if err != nil {
					return err
				}
				dir = e.Config.Factory.TemplateDir
			}
			removed, err := factory.Templates{Dir: dir}.Clean()
			for _, r := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed VM template %s\n", r)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", dir)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&dir, "template-dir", "", "the templates' directory, instead of the configuration's template_dir")
	return cmd
}

func newFactoryServeCommand() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Keep VMs booted ahead for pods of factory.mode = \"cache\" (runs until stopped)",
		Long: `Boots cache_size VMs of the configuration's default size into the pool
(<runtime.state_dir>/cache) and keeps it full: a pod's shim takes a VM by
renaming its directory, a VM older than cache_max_age is replaced. Its VMs
run in host cgroup /podvm-cache, their taps in network namespace podvm-cache,
until a pod takes them. It runs beside containerd, as root, until SIGTERM or
SIGINT, and then stops the VMs no pod took; a start first removes what an
earlier one left. While it does not run, cache pods boot their own VMs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := f.resolve()
			if err != nil {
				return err
			}
			if m := e.Config.Factory.Mode; m != config.FactoryCache {
				return fmt.Errorf("%s: factory.mode = %q: the VM cache serves pods of mode \"cache\" only", e.Base(), m)
			}
			driver, err := drivers.New(e.Config)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return (&cache.Daemon{Config: e.Config, Driver: driver}).Run(ctx)
		},
	}
	f.add(cmd)
	return cmd
}
