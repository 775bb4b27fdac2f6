package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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

// warnings is where podvm warns, the run's stderr (cobra prints pflag's
// own deprecation notes to stdout, into -o json output).
var warnings io.Writer = os.Stderr

// aliasValue is a deprecated name of another flag: setting it sets that
// flag's value and warns.
type aliasValue struct {
	pflag.Value
	old, new string
}

func (a aliasValue) Set(s string) error {
	fmt.Fprintf(warnings, "podvm: --%s is deprecated, use --%s\n", a.old, a.new)
	return a.Value.Set(s)
}

// aliasFlag adds old as a hidden, deprecated name of the flag new, so
// that scripts written for old keep working (and are told the new name).
func aliasFlag(f *pflag.FlagSet, old, new string) {
	flag := f.Lookup(new)
	if flag == nil {
		panic("podvm: alias of an undefined flag --" + new)
	}
	f.Var(aliasValue{flag.Value, old, new}, old, "deprecated: use --"+new)
	if err := f.MarkHidden(old); err != nil {
		panic(err)
	}
}
