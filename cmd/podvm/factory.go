package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/sandbox/factory"
)

func newFactoryCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "factory",
		Short: "Manage the VM factory's templates (docs/factory.md)",
		Long: `With [factory] mode = "template" each pod VM is a clone of a VM template saved
under template_dir by the first pod of its size and guest image; one holder
process per template (podvm-template-hold) keeps its RAM in a sealed memfd
between pods.`,
	}
	cmd.AddCommand(newFactoryCleanCommand())
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
