package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/version"
)

// newRootCommand is the whole command tree.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "podvm",
		Short: "Run Kubernetes pods in their own lightweight VMs",
		Long: `podvm runs each pod (runtimeClassName: podvm) in its own VM with its own guest
kernel, through containerd's shim API.

Start with 'podvm check' to see what this host can do, 'podvm image build' to build
the guest kernel and initramfs, and 'podvm install' to put everything in place.
'podvm config show' prints the configuration the shim uses and where it came from.

Exit codes (docs/cli.md):
  0  success
  1  the command ran and failed (a failed check of the cluster, a failed run)
  2  usage error: unknown command, flag or flag value; see 'podvm COMMAND --help'
  3  an unmet prerequisite: this host cannot run pod VMs ('podvm check'), or a
     binary, image or install the command needs is missing`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(`{{.Name}} {{.Version}}` + "\n")
	root.AddCommand(newCheckCommand(), newImageCommand(), newInstallCommand(), newConfigCommand(), newClusterCommand(),
		newConformanceCommand(), newBenchCommand(), newDeployCommand(), newFactoryCommand(), newVersionCommand())
	strictTree(root)
	return root
}

// run runs podvm with args and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	warnings = stderr
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	return fail(cmd, err, stderr)
}
