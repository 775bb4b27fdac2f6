package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/config"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show or validate the runtime configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the default configuration, with every key documented",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := os.Stdout.Write(config.DefaultTOML())
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [FILE]",
		Short: "Parse a configuration file and report the first problem (default " + config.DefaultPath + ")",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := config.DefaultPath
			if len(args) == 1 {
				path = args[0]
			}
			if _, err := config.Load(path); err != nil {
				return err
			}
			fmt.Printf("%s: ok\n", path)
			return nil
		},
	})
	return cmd
}
