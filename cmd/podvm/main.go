// Command podvm is the operator's tool for the podvm runtime: it checks what
// a host can do, builds the guest image, and installs the runtime.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/version"
)

func main() {
	root := &cobra.Command{
		Use:   "podvm",
		Short: "Run Kubernetes pods in their own lightweight VMs",
		Long: `podvm runs each pod (runtimeClassName: podvm) in its own VM with its own guest
kernel, through containerd's shim API.

Start with 'podvm check' to see what this host can do, 'podvm image build' to build
the guest kernel and initramfs, and 'podvm install' to put everything in place.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newCheckCommand(), newImageCommand(), newInstallCommand(), newConfigCommand(), newClusterCommand(), newConformanceCommand(), newBenchCommand(), newDeployCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "podvm:", err)
		os.Exit(1)
	}
}
