package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/conformance/report"
)

// The exit codes, documented in the root command's help and docs/cli.md.
const (
	exitOK           = 0
	exitFailure      = 1 // the command ran and failed
	exitUsage        = 2 // unknown command, flag or flag value
	exitPrerequisite = 3 // something the command needs is missing here
)

// usageError is a command line podvm cannot run.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// prerequisiteError is a command that cannot run here until something is
// installed, built or fixed.
type prerequisiteError struct{ err error }

func (e prerequisiteError) Error() string { return e.err.Error() }
func (e prerequisiteError) Unwrap() error { return e.err }

// prerequisite marks err (if any) as an unmet prerequisite.
func prerequisite(err error) error {
	if err == nil {
		return nil
	}
	return prerequisiteError{err}
}

// exitCode is the exit code for err.
func exitCode(err error) int {
	var u usageError
	var p prerequisiteError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u) || errors.Is(err, report.ErrUsage):
		return exitUsage
	case errors.As(err, &p):
		return exitPrerequisite
	default:
		return exitFailure
	}
}

// fail prints err as the failure of cmd and returns the exit code.
func fail(cmd *cobra.Command, err error, stderr io.Writer) int {
	code := exitCode(err)
	if code == exitOK {
		return code
	}
	fmt.Fprintln(stderr, "podvm:", err)
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(stderr, "see '%s --help'\n", cmd.CommandPath())
	}
	return code
}

// strictTree makes every usage mistake under root a usageError: bad flags
// and flag values, wrong arguments, and an unknown subcommand at any
// level (cobra itself prints a group's help and succeeds for one).
func strictTree(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRunE
		}
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// groupRunE runs a command that only groups others: its help, or a usage
// error for an unknown subcommand.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

func prerequisiteErrorf(format string, a ...any) error {
	return prerequisiteError{fmt.Errorf(format, a...)}
}
