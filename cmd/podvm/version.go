package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/version"
)

// versionInfo is what `podvm version` prints.
type versionInfo struct {
	Version   string `json:"version" yaml:"version"`
	Revision  string `json:"revision" yaml:"revision"`
	GoVersion string `json:"goVersion" yaml:"goVersion"`
	// Prefix is the install whose guest kernel is reported; "" when this
	// podvm is not part of an install.
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// GuestKernel is the install's guest kernel release (its
	// share/podvm/kernel.release), "" when there is none.
	GuestKernel string `json:"guestKernel,omitempty" yaml:"guestKernel,omitempty"`
}

func newVersionCommand() *cobra.Command {
	var output, prefix string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print podvm's version, revision, Go version and the install's guest kernel release",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersion(prefix)
			if output != outputText {
				return writeOutput(cmd.OutOrStdout(), output, v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "podvm %s\n  revision:     %s\n  go:           %s\n", v.Version, v.Revision, v.GoVersion)
			switch {
			case v.GuestKernel != "":
				fmt.Fprintf(w, "  guest kernel: %s (%s)\n", v.GuestKernel, v.Prefix)
			case v.Prefix != "":
				fmt.Fprintf(w, "  guest kernel: none installed under %s\n", v.Prefix)
			}
			return nil
		},
	}
	outputFlag(cmd, &output, outputJSON, outputYAML)
	prefixFlag(cmd, &prefix, "the install whose guest kernel to report")
	return cmd
}

// currentVersion describes this binary and the install at prefix ("":
// the one this binary belongs to, if any).
func currentVersion(prefix string) versionInfo {
	v := versionInfo{Version: version.Version, Revision: version.Revision, GoVersion: version.Go()}
	if prefix == "" {
		prefix = ownPrefix()
	}
	if prefix == "" {
		return v
	}
	v.Prefix = prefix
	if b, err := os.ReadFile(filepath.Join(prefix, "share", "podvm", "kernel.release")); err == nil {
		v.GuestKernel = strings.TrimSpace(string(b))
	}
	return v
}

// ownPrefix is the install this podvm binary belongs to (PREFIX/bin/podvm
// beside PREFIX/share/podvm), "" when it is not in one.
func ownPrefix() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	prefix := filepath.Dir(filepath.Dir(self))
	if _, err := os.Stat(filepath.Join(prefix, "share", "podvm")); err != nil {
		return ""
	}
	return prefix
}

// prefixFlag adds --prefix, the one name of "where podvm is installed".
func prefixFlag(cmd *cobra.Command, p *string, usage string) {
	cmd.Flags().StringVar(p, "prefix", "", usage+" (default: the install this podvm belongs to)")
}
