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
		Short: "Stop the templates' holders, remove template_dir, and end the VM cache a stopped daemon left",
		Long: `Stops the holder of every VM template and removes template_dir (from the
configuration, or --template-dir). Running pods keep their VMs; the next pod
of a template mode saves a new template. A template a pod is saving right now
is left, and the command fails saying so: run it again.

With the configuration (not with --template-dir alone) it also ends the VMs of
the VM cache that no pod took, which outlive a 'podvm factory serve' that died
or was stopped by a signal it could not handle, and removes its pool
(<runtime.state_dir>/cache). VMs pods took stay with their pods. While a
'podvm factory serve' runs, it fails saying so: stop the daemon (which ends
its VMs) first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg *config.Config
			if dir == "" {
				e, err := f.resolve()
				if err != nil {
					return err
				}
				cfg, dir = e.Config, e.Config.Factory.TemplateDir
			}
			removed, err := factory.Templates{Dir: dir}.Clean()
			for _, r := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed VM template %s\n", r)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", dir)
			if cfg == nil {
				return nil
			}
			if err := cache.Clean(cfg.Runtime.StateDir, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed the VM cache %s\n", cache.PoolDir(cfg.Runtime.StateDir))
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
renaming its directory, a VM older than cache_max_age is replaced; after a
pod took one, the refill waits 10 s without claims (at most 30 s). Its ready
VMs run in host cgroup /podvm-cache at idle CPU priority (cpu.idle), their
taps in network namespace podvm-cache, until a pod takes them. It runs beside containerd, as root, until SIGTERM or
SIGINT, and then stops the VMs no pod took. One runs per pool. The VMs it
booted outlive it, so that a pod on one does not die with the daemon: after a
SIGKILL or a crash its unclaimed VMs run on, and no pod takes them, until its
next start or 'podvm factory clean' ends them. While it does not run, cache
pods boot their own VMs.`,
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
