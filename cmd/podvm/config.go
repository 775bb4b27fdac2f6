package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/config"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show, validate or print the default runtime configuration",
		Long: `The shim and every podvm command resolve the configuration the same way
(Kata's precedence, highest first):

  1. an explicit file: containerd's runtime option ConfigPath, or --config
  2. $` + config.EnvPath + `
  3. the operator's ` + config.DefaultPath + `
  4. the install's shipped PREFIX/` + config.InstalledRel + ` ('podvm install'
     rewrites it; edit 3 instead)
  5. the built-in defaults ('podvm config default')

then, unless the file was named by 1 or 2, the drop-ins
` + filepath.Join(config.EtcDir, "config.d") + `/*.toml on top, in lexical order.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the default configuration, with every key documented",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := cmd.OutOrStdout().Write(config.DefaultTOML())
			return err
		},
	}, newConfigValidateCommand(), newConfigShowCommand())
	return cmd
}

// configFlags are how a command names the configuration to resolve.
type configFlags struct{ path, prefix string }

func (f *configFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "config", "", "configuration file, instead of the resolution (see 'podvm config --help')")
	prefixFlag(cmd, &f.prefix, "the install whose configuration to resolve")
}

// resolve is the configuration the shim of the install would use.
func (f *configFlags) resolve() (*config.Effective, error) {
	shim := besideSelf("containerd-shim-podvm-v2")
	if f.prefix != "" {
		shim = filepath.Join(f.prefix, "bin", "containerd-shim-podvm-v2")
	}
	return config.Resolve(f.path, shim)
}

func newConfigValidateCommand() *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Resolve and validate the configuration (or only FILE) and say which files it read",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				f.path = args[0]
			}
			e, err := f.resolve()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s\n", e.Describe())
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// shownConfig is what `podvm config show -o json|yaml` prints.
type shownConfig struct {
	Sources []config.Source `json:"sources" yaml:"sources"`
	Config  map[string]any  `json:"config" yaml:"config"`
}

func newConfigShowCommand() *cobra.Command {
	var f configFlags
	var output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the files in effect, in order, and every effective value (like kata-runtime env)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := f.resolve()
			if err != nil {
				return err
			}
			return showConfig(cmd.OutOrStdout(), output, e)
		},
	}
	f.add(cmd)
	outputFlag(cmd, &output, outputJSON, outputYAML, outputTOML)
	return cmd
}

// showConfig writes e: as TOML with its sources in comments (text, toml),
// or as one document of sources and values (json, yaml), keyed as in
// the TOML file.
func showConfig(w io.Writer, format string, e *config.Effective) error {
	text, err := toml.Marshal(e.Config)
	if err != nil {
		return fmt.Errorf("encode the configuration: %w", err)
	}
	if format == outputText || format == outputTOML {
		var b strings.Builder
		b.WriteString("# The effective podvm configuration, from (in order):\n")
		for i, s := range e.Sources {
			fmt.Fprintf(&b, "#   %d. %s\n", i+1, s)
		}
		b.WriteString("\n")
		b.Write(text)
		_, err := io.WriteString(w, b.String())
		return err
	}
	var values map[string]any
	if err := toml.Unmarshal(text, &values); err != nil {
		return fmt.Errorf("decode the configuration: %w", err)
	}
	return writeOutput(w, format, shownConfig{Sources: e.Sources, Config: values})
}
