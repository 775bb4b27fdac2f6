package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/cluster/kind"
	"github.com/podvm/podvm/conformance/cluster/local"
)

func newClusterCommand() *cobra.Command {
	opts := local.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Bring a single-node Kubernetes cluster with podvm up or down (for conformance)",
		Long: `Runs a real single-node Kubernetes (v1.37) from host processes: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet whose CRI is
a private containerd with the runc, podvm and test-handler handlers, and the
RuntimeClasses runc and podvm. Images come from a registry on 127.0.0.1 that
serves locally built images; pods sit on a bridge and reach only the host.

Everything lives under --dir; 'down' stops every process, removes every pod
(so every pod VM is torn down) and undoes each change to the host. The binaries
come from 'make conformance' (or ci/install-tools.sh kubernetes etcd).`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&opts.Dir, "dir", opts.Dir, "state directory of the cluster")
	f.StringVar(&opts.NodeName, "node-name", opts.NodeName, "node name (added to /etc/hosts)")
	f.StringVar(&opts.Bridge, "bridge", opts.Bridge, "bridge of the pod network (a second cluster needs its own)")
	f.StringVar(&opts.CgroupRoot, "cgroup-root", opts.CgroupRoot, "kubelet cgroupRoot (a second cluster needs its own, e.g. /podvm-2)")
	f.StringVar(&opts.KubeBinDir, "kube-bin-dir", opts.KubeBinDir, "directory with kube-apiserver, kubelet, kubectl, ...")
	f.StringVar(&opts.Etcd, "etcd", opts.Etcd, "etcd binary")
	f.StringVar(&opts.ContainerdDir, "containerd-dir", opts.ContainerdDir, "directory with containerd and containerd-shim-runc-v2")
	f.StringVar(&opts.Runc, "runc", opts.Runc, "runc binary for the runc handler")
	f.StringVar(&opts.Crictl, "crictl", opts.Crictl, "crictl binary (used to remove pods at 'down')")
	f.StringVar(&opts.CNIBinDir, "cni-bin-dir", opts.CNIBinDir, "directory of the CNI plugins (bridge, host-local, portmap)")
	f.StringVar(&opts.PodvmPrefix, "podvm-prefix", opts.PodvmPrefix, "where podvm is installed ('podvm install --prefix')")
	f.StringVar(&opts.Busybox, "busybox", opts.Busybox, "static busybox for the images")
	f.StringVar(&opts.Testbin, "testbin", opts.Testbin, "podvm's testbin program (the pause image)")
	f.StringVar(&opts.Agnhost, "agnhost", opts.Agnhost, "agnhost binary for the upstream e2e image")
	f.IntVar(&opts.APIServerPort, "apiserver-port", opts.APIServerPort, "kube-apiserver port (on the node address)")
	f.IntVar(&opts.KubeletPort, "kubelet-port", opts.KubeletPort, "kubelet port (on the node address)")
	f.IntVar(&opts.EtcdPort, "etcd-port", opts.EtcdPort, "etcd client port on 127.0.0.1 (peer port is the next one)")
	f.StringVar(&opts.OverheadMemory, "podvm-overhead-memory", opts.OverheadMemory, "RuntimeClass podvm overhead.podFixed memory")
	f.StringVar(&opts.OverheadCPU, "podvm-overhead-cpu", opts.OverheadCPU, "RuntimeClass podvm overhead.podFixed cpu")

	var providerName string
	kopts := kind.Options{Name: "podvm", Dir: "/var/lib/podvm/kind", Kind: "kind", Docker: "docker", Kubectl: "kubectl",
		PodvmPrefix: "/opt/podvm", OverheadMemory: opts.OverheadMemory, OverheadCPU: opts.OverheadCPU}
	f.StringVar(&providerName, "provider", "local", "local (host processes) or kind (Docker nodes; needs hardware KVM)")
	f.StringVar(&kopts.Name, "kind-name", kopts.Name, "kind cluster name")
	f.StringVar(&kopts.NodeImage, "kind-node-image", "", "kindest/node image (default: kind's own)")
	f.IntVar(&kopts.Workers, "kind-workers", 0, "kind worker nodes besides the control plane")
	provider := func() cluster.Provider {
		if providerName == "kind" {
			kopts.PodvmPrefix = opts.PodvmPrefix
			return kind.New(kopts)
		}
		return local.New(opts)
	}
	cmd.AddCommand(newRestartContainerdCommand(&opts.Dir))
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Start the cluster (prints the kubeconfig to use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err := provider().Up(ctx, cmd.ErrOrStderr())
			return err
		},
	}, &cobra.Command{
		Use:   "down",
		Short: "Stop the cluster and remove everything it added to the host (logs are kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return provider().Down(context.WithoutCancel(cmd.Context()), cmd.ErrOrStderr())
		},
	}, &cobra.Command{
		Use:   "status",
		Short: "Show each process of the cluster and whether the node is Ready (exit 1 if not healthy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := provider().Status(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), st)
			if !st.Healthy() {
				return fmt.Errorf("cluster is not healthy")
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "kind-config",
		Short: "Print the kind cluster configuration podvm uses (/dev/kvm and podvm mounted into the nodes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kopts.PodvmPrefix = opts.PodvmPrefix
			text, err := kind.New(kopts).Config()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), text)
			return nil
		},
	})
	var addrFile, hostsDir string
	serve := &cobra.Command{
		Use:    "serve-registry",
		Short:  "Serve the cluster's images on 127.0.0.1 (started by 'cluster up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return local.ServeRegistry(ctx, addrFile, hostsDir, opts.Busybox, opts.Testbin, opts.Agnhost)
		},
	}
	serve.Flags().StringVar(&addrFile, "addr-file", "", "file to write host:port to once serving")
	serve.Flags().StringVar(&hostsDir, "hosts-dir", "", "containerd certs.d directory to point at the registry")
	cmd.AddCommand(serve)
	return cmd
}

// newRestartContainerdCommand restarts a local cluster's containerd in
// place. The local cluster has no systemd, so this is what the podvm
// installer runs there as its --restart-command, chrooted into the node.
func newRestartContainerdCommand(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "restart-containerd",
		Short: "Restart the local cluster's containerd in its own namespaces and cgroups (the installer's --restart-command there)",
		Long: `Restarts the containerd of a local cluster ('podvm cluster up') with the same
command line, environment, namespaces, cgroups and limits, appending to its log and
updating its pid file, so that 'podvm cluster status' and 'down' follow the new
process. Running pods keep running: their shims outlive containerd. The podvm
installer DaemonSet runs it chrooted into the node after writing its containerd
drop-in (docs/deploy.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			return local.RestartContainerd(ctx, *dir, cmd.OutOrStdout())
		},
	}
}
