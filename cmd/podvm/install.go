package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
	"github.com/podvm/podvm/runtime/virtiofsd"
)

func newInstallCommand() *cobra.Command {
	var prefix, imageDir, etcDir string
	var h helpers
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the shim, the guest image and a default configuration under a prefix",
		Long: `Copies containerd-shim-podvm-v2, podvm and podvm-agent (taken from beside this
binary) into PREFIX/bin, the helpers given by --virtiofsd and
--vhost-device-vsock into PREFIX/libexec/podvm (only when given: without
vhost-device-vsock the agent channel is virtio-serial; hybrid vsock is opt-in
while an intermittent hang is open), the guest image into PREFIX/share/podvm,
writes
PREFIX/share/podvm/config.toml (the defaults, pointing at that image), and prints
the containerd configuration that adds the 'podvm' runtime handler.

It never writes the operator's configuration (--etc-dir: config.toml and
config.d/*.toml there win over the shipped file, see 'podvm config --help'),
and never edits containerd's configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return install(prefix, imageDir, etcDir, h, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "/opt/podvm", "installation prefix")
	cmd.Flags().StringVar(&imageDir, "image-dir", defaultImageDir, "directory holding vmlinux and initramfs.cpio (from 'podvm image build --image-dir')")
	cmd.Flags().StringVar(&etcDir, "etc-dir", config.EtcDir, "the operator's configuration directory of this install (a test install gives its own, away from the machine's)")
	cmd.Flags().StringVar(&h.vsockd, "vhost-device-vsock", "", "the vhost-device-vsock binary to ship, making the agent channel hybrid vsock (default: none, virtio-serial)")
	cmd.Flags().StringVar(&h.virtiofsd, "virtiofsd", "", "the Rust virtiofsd binary to ship (default: none, the runtime looks in the usual places)")
	return cmd
}

func install(prefix, imageDir, etcDir string, h helpers, out io.Writer) error {
	prefix, err := filepath.Abs(prefix)
	if err != nil {
		return err
	}
	if etcDir, err = filepath.Abs(etcDir); err != nil {
		return err
	}
	binDir := filepath.Join(prefix, "bin")
	shareDir := filepath.Join(prefix, "share", "podvm")
	for _, d := range []string{binDir, shareDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	for _, name := range []string{"containerd-shim-podvm-v2", "podvm", "podvm-agent"} {
		src := besideSelf(name)
		if err := copyFile(src, filepath.Join(binDir, name), 0o755); err != nil {
			return prerequisiteErrorf("install %s: %w (build it with `make build`)", name, err)
		}
	}
	for _, name := range []string{"vmlinux", "initramfs.cpio", "kernel.release", "runc-features.json"} {
		src := filepath.Join(imageDir, name)
		if _, err := os.Stat(src); os.IsNotExist(err) && name == "runc-features.json" {
			continue // optional: the guest runc could not describe itself
		}
		if err := copyFile(src, filepath.Join(shareDir, name), 0o644); err != nil {
			return prerequisiteErrorf("install guest image file %s: %w (run `podvm image build --image-dir %s` first)", name, err, imageDir)
		}
	}
	if err := h.install(prefix, out); err != nil {
		return err
	}
	// One configuration per runtime handler: podvm (qemu, KVM or TCG) and
	// podvm-clh (cloud-hypervisor, hardware KVM only).
	cfgText, err := config.ForPrefix(config.DefaultTOML(), prefix)
	if err != nil {
		return fmt.Errorf("generated configuration is invalid: %w", err)
	}
	cfgPath := filepath.Join(shareDir, "config.toml")
	files := map[string][]byte{cfgPath: cfgText, filepath.Join(prefix, config.InstalledEtcDirRel): []byte(etcDir + "\n")}
	for _, v := range configVariants {
		text, err := v.of(cfgText, filepath.Join(shareDir, v.file))
		if err != nil {
			return err
		}
		files[filepath.Join(shareDir, v.file)] = text
	}
	for path, text := range files {
		if err := writeAtomic(path, text, 0o644); err != nil {
			return err
		}
	}
	printHandlers(out, prefix, filepath.Join(binDir, "containerd-shim-podvm-v2"), shareDir)
	printOperatorConfig(out, etcDir, cfgPath)
	return nil
}

// printOperatorConfig says which configuration the shim will use: the
// operator's file is never written here, and wins when it exists.
func printOperatorConfig(out io.Writer, etcDir, shipped string) {
	own := filepath.Join(etcDir, "config.toml")
	if _, err := os.Stat(own); err == nil {
		fmt.Fprintf(out, "\nYour %s was left as it is: it wins over the shipped %s.\n", own, shipped)
	} else {
		fmt.Fprintf(out, "\nThe shim uses the shipped %s (rewritten by every install).\nTo change a setting, put it in %s or %s/config.d/*.toml: no install overwrites those.\n",
			shipped, own, etcDir)
	}
	fmt.Fprintln(out, "'podvm config show' prints the files in effect and every value.")
}

// helpers are the optional daemons shipped into <prefix>/libexec/podvm/,
// where the runtime looks first (vmm.FindHybridVsock,
// virtiofsd.Candidates); each path is empty when not given.
type helpers struct {
	vsockd, virtiofsd string
}

// install copies the helpers given. vhost-device-vsock is never looked up
// here: shipping it makes hybrid vsock every pod's channel, which stays a
// deliberate choice while its unanswered-CONNECT hang is open
// (docs/design.md, "Agent channel").
func (h helpers) install(prefix string, out io.Writer) error {
	if h.vsockd == "" {
		fmt.Fprintf(out, "%s not installed (no --vhost-device-vsock): the agent channel will be virtio-serial\n", vmm.HybridVsockBinaryName)
	}
	for _, f := range []struct{ src, rel string }{
		{h.vsockd, filepath.Join("libexec", "podvm", vmm.HybridVsockBinaryName)},
		{h.virtiofsd, virtiofsd.InstalledRel},
	} {
		src, rel := f.src, f.rel
		if src == "" {
			continue
		}
		dst := filepath.Join(prefix, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
		}
		if err := copyFile(src, dst, 0o755); err != nil {
			return fmt.Errorf("install %s: %w", filepath.Base(dst), err)
		}
	}
	return nil
}

// configVariant is the shipped configuration of a second runtime handler:
// config.toml with some settings changed (comments kept).
type configVariant struct {
	file string
	// set are the lines replaced: "key = old" -> "key = new".
	set [][2]string
}

// configVariants are the files of the handlers podvm-clh
// (cloud-hypervisor, hardware KVM only), podvm-template (pod VMs cloned
// from a template, docs/factory.md) and podvm-cache (pod VMs `podvm
// factory serve` booted ahead). The cache's state_dir is its own, so that
// its pool (<state_dir>/cache) is never another handler's and `podvm
// factory clean` of another configuration never touches it. Its pool is 4:
// with 2, a refill's wait for 10 s of quiet left 5 of 13 conformance pods
// without a cached VM (make test, 2026-12-07 23:10 UTC).
var configVariants = []configVariant{
	{"config-clh.toml", [][2]string{{`driver = "qemu"`, `driver = "cloud-hypervisor"`}}},
	{"config-template.toml", [][2]string{{`shared_fs = "virtiofs"`, `shared_fs = "9p"`}, {`mode = "none"`, `mode = "template"`}}},
	{"config-cache.toml", [][2]string{{`state_dir = "/run/podvm"`, `state_dir = "` + cacheStateDir + `"`}, {`mode = "none"`, `mode = "cache"`},
		{`cache_size = 2`, `cache_size = 4`}}},
}

// cacheStateDir is config-cache.toml's runtime.state_dir.
const cacheStateDir = "/run/podvm-cache"

// of is the variant of base, checked by the parser as path.
func (v configVariant) of(base []byte, path string) ([]byte, error) {
	text := string(base)
	for _, kv := range v.set {
		if !strings.Contains(text, "\n"+kv[0]+"\n") {
			return nil, fmt.Errorf("generated configuration %s: the shipped one has no line %q to change", path, kv[0])
		}
		text = strings.Replace(text, "\n"+kv[0]+"\n", "\n"+kv[1]+"\n", 1)
	}
	if _, err := config.Parse([]byte(text), path); err != nil {
		return nil, fmt.Errorf("generated configuration is invalid: %w", err)
	}
	return []byte(text), nil
}

// printHandlers tells the operator how to add the podvm runtime handlers
// to containerd's configuration.
func printHandlers(out io.Writer, prefix, shim, shareDir string) {
	cfgPath := filepath.Join(shareDir, "config.toml")
	handler := func(name, file string) string {
		return indent(config.Handler{Name: name, Shim: shim, ConfigPath: filepath.Join(shareDir, file)}.TOML(), "  ")
	}
	fmt.Fprintf(out, `podvm installed under %[1]s

Add the podvm runtime handlers to containerd's configuration (containerd 2.x,
config version 3 or 4), then restart containerd:

  # QEMU: hardware KVM when usable, else TCG software emulation.
%[2]s
  # Cloud Hypervisor (needs hardware KVM and cloud-hypervisor on PATH;
  # 'podvm check --config %[4]s' tells whether this host can run it).
%[3]s
  # QEMU, each pod VM a clone of a saved template (faster start, less
  # memory; pages shared between pods: docs/factory.md).
%[7]s
  # QEMU, each pod VM one booted ahead by 'podvm factory serve --config
  # %[9]s', which runs beside containerd (docs/factory.md).
%[8]s
With ctr: ctr run --runtime %[5]s --runtime-config-path %[6]s IMAGE ID CMD...
`, prefix, handler("podvm", "config.toml"), handler("podvm-clh", "config-clh.toml"), filepath.Join(shareDir, "config-clh.toml"),
		shim, cfgPath, handler("podvm-template", "config-template.toml"), handler("podvm-cache", "config-cache.toml"),
		filepath.Join(shareDir, "config-cache.toml"))
}

// indent puts prefix before each line of text.
func indent(text, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSuffix(text, "\n"), "\n", "\n"+prefix) + "\n"
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	// Rename, so a running shim binary is replaced rather than overwritten.
	return os.Rename(tmp, dst)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
