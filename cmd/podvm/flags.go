package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// enumValue is a string flag that takes only one of its allowed values, so
// that a typo is a usage error instead of a silent default.
type enumValue struct {
	value   *string
	allowed []string
}

func (e *enumValue) String() string { return *e.value }
func (e *enumValue) Type() string   { return "string" }
func (e *enumValue) Set(s string) error {
	if !slices.Contains(e.allowed, s) {
		return fmt.Errorf("must be one of %s", strings.Join(e.allowed, ", "))
	}
	*e.value = s
	return nil
}

// enumVarP defines a flag that takes one of allowed, default def; the
// allowed values are listed in its usage.
func enumVarP(f *pflag.FlagSet, p *string, name, short, def string, allowed []string, usage string) {
	*p = def
	f.VarP(&enumValue{p, allowed}, name, short, usage+" ("+strings.Join(allowed, "|")+")")
}

// The output formats of -o.
const (
	outputText = "text"
	outputJSON = "json"
	outputYAML = "yaml"
	outputTOML = "toml"
)

// outputFlag adds -o/--output to cmd, taking text and the given formats.
func outputFlag(cmd *cobra.Command, p *string, formats ...string) {
	enumVarP(cmd.Flags(), p, "output", "o", outputText, append([]string{outputText}, formats...), "output format")
}

// writeOutput writes v in a machine-readable format.
func writeOutput(w io.Writer, format string, v any) error {
	var b []byte
	var err error
	switch format {
	case outputJSON:
		b, err = json.MarshalIndent(v, "", "  ")
		b = append(b, '\n')
	case outputYAML:
		b, err = yaml.Marshal(v)
	case outputTOML:
		b, err = toml.Marshal(v)
	default:
		return fmt.Errorf("output format %q has no encoder", format)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", format, err)
	}
	_, err = w.Write(b)
	return err
}

// aliasFlag adds old as a hidden, deprecated name of the flag new, so
// that scripts written for old keep working (and are told the new name).
func aliasFlag(f *pflag.FlagSet, old, new string) {
	flag := f.Lookup(new)
	if flag == nil {
		panic("podvm: alias of an undefined flag --" + new)
	}
	f.Var(flag.Value, old, flag.Usage)
	if err := f.MarkDeprecated(old, "use --"+new); err != nil {
		panic(err)
	}
}
