package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/guestimage"
	"github.com/podvm/podvm/internal/estimate"
)

// defaultImageDir is where the default configuration expects the image.
const defaultImageDir = "/opt/podvm/share/podvm"

func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build the guest image (kernel and initramfs)"}
	var o guestimage.Options
	var out string
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the guest kernel and initramfs, reusing cached builds",
		Long: `Builds the guest kernel from Debian's linux-source-6.1 with podvm's config
fragment (` + estimate.KernelBuild.About() + `, cached by content hash
afterwards) and an initramfs holding podvm-agent as /init, a static runc and,
when installed, crun with its shared libraries, then copies both to --image-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Progress = os.Stderr
			if _, err := os.Stat(o.CrunBinary); err != nil && !cmd.Flags().Changed("crun") {
				fmt.Fprintf(os.Stderr, "no crun at %s: the image gets runc only (guest_oci_runtime = \"crun\" will fail)\n", o.CrunBinary)
				o.CrunBinary = ""
			}
			img, err := guestimage.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := guestimage.Install(img, out); err != nil {
				return err
			}
			fmt.Printf("guest kernel %s\n  kernel:    %s\n  initramfs: %s\n",
				img.KernelRelease, filepath.Join(out, "vmlinux"), filepath.Join(out, "initramfs.cpio"))
			return nil
		},
	}
	build.Flags().StringVar(&o.CacheDir, "cache", "", "cache directory (default $PODVM_CACHE or /var/cache/podvm)")
	build.Flags().StringVar(&o.AgentBinary, "agent", besideSelf("podvm-agent"), "static podvm-agent binary to use as /init")
	build.Flags().StringVar(&o.RuncBinary, "runc", cachedRuncStatic(), "static runc binary for the guest (ci/install-tools.sh runc builds it)")
	build.Flags().StringVar(&o.CrunBinary, "crun", debianCrun, "crun binary for the guest, put in with its shared libraries (Debian's crun package; left out when the default is not installed); empty: none")
	build.Flags().IntVar(&o.Jobs, "jobs", 0, "parallel kernel build jobs (default: number of CPUs)")
	build.Flags().StringVar(&out, "image-dir", defaultImageDir, "directory to install vmlinux and initramfs.cpio into")
	aliasFlag(build.Flags(), "out", "image-dir")
	cmd.AddCommand(build)
	return cmd
}

// besideSelf names a file in the directory of the running podvm binary,
// where `make build` and `podvm install` put the other binaries.
func besideSelf(name string) string {
	self, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(self), name)
}

// debianCrun is where Debian's crun package installs crun.
const debianCrun = "/usr/bin/crun"

// cachedRuncStatic is where ci/install-tools.sh caches the guest's runc.
func cachedRuncStatic() string {
	cache := os.Getenv("PODVM_CACHE")
	if cache == "" {
		cache = "/var/cache/podvm"
	}
	return filepath.Join(cache, "tools", "runc-v1.5.2", "bin", "runc-static")
}
