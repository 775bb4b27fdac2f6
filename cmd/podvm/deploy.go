package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/podvm/podvm/deploy"
	"github.com/podvm/podvm/deploy/node"
	"github.com/podvm/podvm/version"
)

func newDeployCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Install podvm on a Kubernetes cluster's nodes (installer DaemonSet, RuntimeClass)",
		Long: `Puts podvm on the nodes of a real cluster, as kata-deploy does for Kata:
an installer DaemonSet copies podvm onto every selected node, adds the podvm
handler to containerd through a drop-in file, restarts containerd, checks the
node and labels it podvm.io/runtime=ready; the RuntimeClass podvm schedules
pods only onto labelled nodes. See docs/deploy.md.

  podvm deploy image --push REGISTRY/podvm/installer:TAG   # build and push the installer image
  podvm deploy install --kubeconfig K --image REGISTRY/podvm/installer:TAG
  podvm deploy uninstall --kubeconfig K   # finds what install put there
  podvm deploy render --image ... | kubectl apply -f -     # the manifests alone`,
	}
	cmd.AddCommand(newDeployRenderCommand(), newDeployInstallCommand(false), newDeployInstallCommand(true),
		newDeployImageCommand(), newDeployNodeCommand())
	return cmd
}

// manifestFlags adds the flags that shape the manifests.
func manifestFlags(cmd *cobra.Command, o *deploy.Options, nodeSelector *string) {
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "installer image reference, as the nodes pull it (required; see 'podvm deploy image')")
	enumVarP(f, &o.ImagePullPolicy, "image-pull-policy", "", o.ImagePullPolicy, []string{"Always", "IfNotPresent", "Never"}, "imagePullPolicy of the installer pods")
	f.StringVarP(&o.Namespace, "namespace", "n", o.Namespace, "namespace of the installer")
	f.StringVar(&o.HostPrefix, "prefix", o.HostPrefix, "directory podvm is installed into on each node")
	aliasFlag(f, "host-prefix", "prefix")
	f.StringVar(&o.ContainerdConfig, "containerd-config", o.ContainerdConfig, "containerd's main configuration on the nodes (must import the drop-in directory; never edited)")
	f.StringVar(&o.DropInDir, "containerd-dropin-dir", o.DropInDir, "directory of containerd drop-in files on the nodes")
	f.StringVar(&o.ContainerdSocket, "containerd-socket", o.ContainerdSocket, "containerd's CRI socket on the nodes")
	f.StringVar(&o.RestartCommand, "restart-command", "", "command that restarts containerd on a node, run chrooted into the node's / (split on spaces, no shell); default: systemctl restart containerd")
	f.StringVar(&o.FactoryCommand, "factory-command", "", "command that starts|restarts|stops the VM cache's daemon on a node without systemd, run chrooted (split on spaces); default: a systemd unit podvm-factory")
	f.StringVar(&o.APIServer, "api-server", "", "API server URL the installers label nodes through (default: the in-cluster service)")
	f.StringVarP(nodeSelector, "node-selector", "l", selectorString(o.NodeSelector), "nodes to install on: comma-separated key=value labels")
	f.StringVar(&o.OverheadMemory, "overhead-memory", o.OverheadMemory, "RuntimeClass overhead.podFixed.memory (docs/deploy.md, Derivation)")
	f.StringVar(&o.OverheadCPU, "overhead-cpu", o.OverheadCPU, "RuntimeClass overhead.podFixed.cpu")
}

func parseSelector(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--node-selector %q: want key=value[,key=value]", s)
		}
		out[k] = v
	}
	return out, nil
}

func newDeployRenderCommand() *cobra.Command {
	o := deploy.DefaultOptions()
	var selector string
	var cleanup bool
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Print the manifests: namespace, RBAC, installer DaemonSet, RuntimeClass (--cleanup: the cleanup DaemonSet)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.NodeSelector, err = parseSelector(selector); err != nil {
				return usageError{err}
			}
			render := deploy.Render
			if cleanup {
				render = deploy.RenderCleanup
			}
			text, err := render(o)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), text)
			return nil
		},
	}
	manifestFlags(cmd, &o, &selector)
	cmd.Flags().BoolVar(&cleanup, "cleanup", false, "print the cleanup DaemonSet, which removes podvm from the nodes")
	return cmd
}

func newDeployInstallCommand(uninstall bool) *cobra.Command {
	o := deploy.DefaultOptions()
	var selector string
	k := deploy.Kubectl{Path: "kubectl"}
	timeout := 10 * time.Minute
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Apply the manifests and wait until every selected node is ready for podvm pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.NodeSelector, err = parseSelector(selector); err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if uninstall {
				if o, err = installedOptions(ctx, cmd, k, o); err != nil {
					return err
				}
				return deploy.Uninstall(ctx, k, o, timeout, cmd.OutOrStdout())
			}
			nodes, err := deploy.Install(ctx, k, o, timeout, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if len(nodes) == 0 {
				return fmt.Errorf("the installer is ready but no node carries %s=%s", deploy.LabelKey, deploy.LabelValue)
			}
			return nil
		},
	}
	if uninstall {
		cmd.Use = "uninstall"
		cmd.Short = "Remove podvm from every node (cleanup DaemonSet) and delete everything install created"
		cmd.Long = `Finds the install from the kubeconfig alone: the namespace labelled
` + deploy.PartOfLabel + ` records the install's options (annotation
` + deploy.OptionsAnnotation + `); flags given here override them, and
are needed only for an install made by an older podvm.

Refuses while pods with runtimeClassName podvm exist. Deletes the RuntimeClass,
the installer DaemonSet, runs the cleanup DaemonSet (each node: label removed,
containerd drop-in removed, containerd restarted, files removed), then deletes
the cleanup DaemonSet, the RBAC objects and the namespace.`
	}
	manifestFlags(cmd, &o, &selector)
	f := cmd.Flags()
	f.StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: kubectl's own choice)")
	f.StringVar(&k.Context, "context", "", "kubeconfig context to use (default: its current context)")
	f.StringVar(&k.Path, "kubectl", k.Path, "kubectl binary")
	f.DurationVar(&timeout, "timeout", timeout, "how long to wait for the nodes")
	return cmd
}

// installedOptions are the options the cluster's install recorded, with
// the manifest flags given on cmd's command line on top; without a
// record, the flags alone (given is what they say).
func installedOptions(ctx context.Context, cmd *cobra.Command, k deploy.Kubectl, given deploy.Options) (deploy.Options, error) {
	ns := ""
	if cmd.Flags().Changed("namespace") {
		ns = given.Namespace
	}
	rec, found, err := deploy.Installed(ctx, k, ns)
	if err != nil {
		return given, err
	}
	if !found {
		if given.Image == "" {
			return given, fmt.Errorf("no podvm install found on the cluster (no namespace labelled %s): nothing to uninstall, "+
				"or give the install's flags (--image, --prefix, ...)", deploy.PartOfLabel)
		}
		return given, nil
	}
	// The flags given again, parsed onto the record. Defining a flag sets
	// its variable to the default: the record is put in after.
	again := &cobra.Command{}
	var merged deploy.Options
	var selector string
	manifestFlags(again, &merged, &selector)
	merged, selector = rec, selectorString(rec.NodeSelector)
	var setErr error
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if f := again.Flags().Lookup(fl.Name); f != nil && setErr == nil {
			setErr = f.Value.Set(fl.Value.String())
		}
	})
	if setErr != nil {
		return given, usageError{setErr}
	}
	if merged.NodeSelector, err = parseSelector(selector); err != nil {
		return given, usageError{err}
	}
	return merged, nil
}

// selectorString is m as --node-selector takes it.
func selectorString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func newDeployImageCommand() *cobra.Command {
	src := deploy.ImageSources{BinDir: filepath.Dir(besideSelf("podvm")), GuestDir: defaultImageDir, Version: version.Version}
	var push, tarPath string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the installer image from podvm's static binaries and the guest image; push it or write a tarball",
		Long: `The image has no base: /podvm/bin holds podvm, containerd-shim-podvm-v2 and
podvm-agent (each must be statically linked: build with CGO_ENABLED=0, as
'make deploy-image' does), /podvm/share/podvm the guest kernel, initramfs and
the default configuration. --tar writes a docker-save tarball for
'kind load image-archive' or 'ctr images import'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if push == "" && tarPath == "" {
				return fmt.Errorf("nothing to do: give --push REF and/or --tar FILE")
			}
			start := time.Now()
			img, err := deploy.BuildImage(src)
			if err != nil {
				return err
			}
			digest, err := img.Digest()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "built installer image %s in %s\n", digest, time.Since(start).Round(100*time.Millisecond))
			if push != "" {
				if err := deploy.PushImage(push, img, insecure); err != nil {
					return err
				}
				fmt.Fprintf(out, "pushed %s\n", push)
			}
			if tarPath != "" {
				ref := push
				if ref == "" {
					ref = "podvm/installer:" + version.Version
				}
				if err := deploy.WriteImageTarball(tarPath, ref, img); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %s (tagged %s)\n", tarPath, ref)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&src.BinDir, "bin-dir", src.BinDir, "directory of the static podvm, containerd-shim-podvm-v2 and podvm-agent")
	f.StringVar(&src.GuestDir, "image-dir", src.GuestDir, "guest image directory (vmlinux, initramfs.cpio, kernel.release, runc-features.json)")
	f.StringVar(&push, "push", "", "push the image to this reference (a loopback registry is reached over plain HTTP)")
	f.BoolVar(&insecure, "insecure", false, "plain HTTP to a registry that is not on a loopback address")
	f.StringVar(&tarPath, "tar", "", "write the image as a tarball to this file")
	return cmd
}

func newDeployNodeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "node",
		Hidden: true,
		Short:  "The node installer: runs inside the installer and cleanup DaemonSets' pods",
		Long: `'podvm deploy node install' and 'uninstall' are what the DaemonSets run on
each node, in the DaemonSets' privileged init containers (the node's /
mounted at --host-root); 'wait' is the unprivileged container that stays.
They are not meant to be run by hand; see docs/deploy.md.`,
	}
	cmd.AddCommand(newDeployNodeVerbCommand("install", "Install podvm on this node, then label it", false),
		newDeployNodeVerbCommand("uninstall", "Remove podvm from this node, label first", true), newDeployNodeReadyCommand(),
		newDeployNodeWaitCommand())
	return cmd
}

// nodeOptions are the flags of `podvm deploy node install` and `uninstall`.
type nodeOptions struct {
	node.Options
	label, restart, factory, apiServer, doneFile string
	exit                                         bool
}

// newDeployNodeVerbCommand is `podvm deploy node install` (or, with
// uninstall, `uninstall`).
func newDeployNodeVerbCommand(use, short string, uninstall bool) *cobra.Command {
	o := &nodeOptions{Options: node.Defaults()}
	o.NodeName = os.Getenv("NODE_NAME")
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, uninstall, cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringVar(&o.HostRoot, "host-root", o.HostRoot, "where the node's / is mounted")
	f.StringVar(&o.Payload, "payload", o.Payload, "directory in the image holding bin/ and share/podvm/")
	f.StringVar(&o.Prefix, "prefix", o.Prefix, "installation directory on the node")
	f.StringVar(&o.ContainerdConfig, "containerd-config", o.ContainerdConfig, "containerd's main configuration on the node")
	f.StringVar(&o.DropInDir, "containerd-dropin-dir", o.DropInDir, "drop-in directory containerd's configuration imports")
	f.StringVar(&o.ContainerdSocket, "containerd-socket", o.ContainerdSocket, "containerd's CRI socket on the node")
	f.StringVar(&o.ContainerdUnit, "containerd-unit", o.ContainerdUnit, "containerd's systemd unit")
	f.StringVar(&o.restart, "restart-command", "", "command restarting containerd, run chrooted into the node's / (default: systemctl restart UNIT)")
	f.StringVar(&o.factory, "factory-command", "", "command that starts|restarts|stops the VM cache's daemon (factory.mode = \"cache\"), run chrooted into the node's / (default: systemd unit podvm-factory)")
	f.StringVar(&o.Handler, "handler", o.Handler, "runtime handler name")
	f.StringVar(&o.NodeName, "node-name", o.NodeName, "this node's name (default $NODE_NAME)")
	f.StringVar(&o.label, "label", o.LabelKey+"="+o.LabelValue, "label of a node ready for podvm pods")
	f.StringVar(&o.apiServer, "api-server", "", "API server URL (default: in-cluster)")
	f.StringVar(&o.doneFile, "done-file", "", "file to write when done (the readiness probe's)")
	f.BoolVar(&o.exit, "exit", false, "exit when done instead of waiting for the pod's deletion")
	return c
}

// complete sets the node options that flags give as text.
func (o *nodeOptions) complete() error {
	key, value, ok := strings.Cut(o.label, "=")
	if !ok || key == "" || value == "" {
		return fmt.Errorf("--label %q: want key=value", o.label)
	}
	o.LabelKey, o.LabelValue = key, value
	o.RestartCommand = strings.Fields(o.restart)
	o.FactoryCommand = strings.Fields(o.factory)
	return nil
}

// run installs (or uninstalls), writes the done file, and then waits for
// the pod's deletion unless told to exit.
func (o *nodeOptions) run(ctx context.Context, uninstall bool, log io.Writer) error {
	in := node.New(o.Options, node.ChrootRunner, &node.APILabeler{Server: o.apiServer}, node.CRIHandlers, log)
	run := in.Install
	if uninstall {
		run = in.Uninstall
	}
	if err := run(ctx); err != nil {
		return err
	}
	if o.doneFile != "" {
		if err := os.MkdirAll(filepath.Dir(o.doneFile), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.doneFile, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
			return err
		}
	}
	if o.exit {
		return nil
	}
	fmt.Fprintln(log, "done; waiting until the pod is deleted")
	<-ctx.Done()
	return nil
}

func newDeployNodeReadyCommand() *cobra.Command {
	var probeFile string
	ready := &cobra.Command{
		Use:   "ready",
		Short: "Readiness probe: succeed once install or uninstall is done",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := os.Stat(probeFile); err != nil {
				return fmt.Errorf("not done yet: %w", err)
			}
			return nil
		},
	}
	ready.Flags().StringVar(&probeFile, "done-file", "", "the file install or uninstall writes when done")
	return ready
}

// newDeployNodeWaitCommand is what stays running in the DaemonSets' pods
// once their init container has done the node's work: it holds the pod
// Ready, unprivileged, until the pod is deleted.
func newDeployNodeWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait",
		Short: "Wait until the pod is deleted (the unprivileged container that stays once a node is done)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			deleted := make(chan os.Signal, 1)
			signal.Notify(deleted, os.Interrupt, syscall.SIGTERM)
			<-deleted
			return nil
		},
	}
}
