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

// clusterOptions are the flags `podvm cluster` gives its subcommands.
type clusterOptions struct {
	local    local.Options
	kind     kind.Options
	provider string // "local" or "kind"
}

func newClusterOptions() *clusterOptions {
	l := local.DefaultOptions()
	return &clusterOptions{local: l, provider: "local",
		kind: kind.Options{Name: "podvm", Dir: "/var/lib/podvm/kind", Kind: "kind", Docker: "docker", Kubectl: "kubectl",
			PodvmPrefix: "/opt/podvm", OverheadMemory: l.OverheadMemory, OverheadCPU: l.OverheadCPU}}
}

// addFlags adds the flags to cmd and, persistent, to its subcommands.
func (o *clusterOptions) addFlags(cmd *cobra.Command) {
	f, l := cmd.PersistentFlags(), &o.local
	f.StringVar(&l.Dir, "cluster-dir", l.Dir, "state directory of the cluster")
	aliasFlag(f, "dir", "cluster-dir")
	f.StringVar(&l.NodeName, "node-name", l.NodeName, "node name (added to /etc/hosts)")
	f.StringVar(&l.Bridge, "bridge", l.Bridge, "bridge of the pod network (a second cluster needs its own)")
	f.StringVar(&l.CgroupRoot, "cgroup-root", l.CgroupRoot, "kubelet cgroupRoot (a second cluster needs its own, e.g. /podvm-2)")
	f.StringVar(&l.KubeBinDir, "kube-bin-dir", l.KubeBinDir, "directory with kube-apiserver, kubelet, kubectl, ...")
	f.StringVar(&l.Etcd, "etcd", l.Etcd, "etcd binary")
	f.StringVar(&l.ContainerdDir, "containerd-dir", l.ContainerdDir, "directory with containerd and containerd-shim-runc-v2")
	f.StringVar(&l.Runc, "runc", l.Runc, "runc binary for the runc handler")
	f.StringVar(&l.Crictl, "crictl", l.Crictl, "crictl binary (used to remove pods at 'down')")
	f.StringVar(&l.CNIBinDir, "cni-bin-dir", l.CNIBinDir, "directory of the CNI plugins (bridge, host-local, portmap)")
	f.StringVar(&l.PodvmPrefix, "prefix", l.PodvmPrefix, "where podvm is installed ('podvm install --prefix')")
	aliasFlag(f, "podvm-prefix", "prefix")
	f.StringVar(&l.Busybox, "busybox", l.Busybox, "static busybox for the images")
	f.StringVar(&l.Testbin, "testbin", l.Testbin, "podvm's testbin program (the pause image)")
	f.StringVar(&l.FakeVMRunc, "fakevm-runc", l.FakeVMRunc, "the fake-VM baseline's runc wrapper (runc-fakevm handler)")
	f.StringVar(&l.Agnhost, "agnhost", l.Agnhost, "agnhost binary for the upstream e2e image")
	f.IntVar(&l.APIServerPort, "apiserver-port", l.APIServerPort, "kube-apiserver port (on the node address)")
	f.IntVar(&l.KubeletPort, "kubelet-port", l.KubeletPort, "kubelet port (on the node address)")
	f.IntVar(&l.EtcdPort, "etcd-port", l.EtcdPort, "etcd client port on 127.0.0.1 (peer port is the next one)")
	f.StringVar(&l.OverheadMemory, "podvm-overhead-memory", l.OverheadMemory, "RuntimeClass podvm overhead.podFixed memory")
	f.StringVar(&l.OverheadCPU, "podvm-overhead-cpu", l.OverheadCPU, "RuntimeClass podvm overhead.podFixed cpu")
	f.IntVar(&l.CachePool, "cache-pool", l.CachePool, "VM cache pool of class podvm-cache on this cluster (-1: config-cache.toml's cache_size)")
	enumVarP(f, &o.provider, "provider", "", o.provider, []string{"local", "kind"}, "local: host processes; kind: Docker nodes, needs hardware KVM")
	f.StringVar(&o.kind.Name, "kind-name", o.kind.Name, "kind cluster name")
	f.StringVar(&o.kind.NodeImage, "kind-node-image", "", "kindest/node image (default: kind's own)")
	f.IntVar(&o.kind.Workers, "kind-workers", 0, "kind worker nodes besides the control plane")
}

// kindProvider is the kind provider, with podvm where --prefix says.
func (o *clusterOptions) kindProvider() *kind.Provider {
	o.kind.PodvmPrefix = o.local.PodvmPrefix
	return kind.New(o.kind)
}

// Provider is the provider --provider names.
func (o *clusterOptions) Provider() cluster.Provider {
	if o.provider == "kind" {
		return o.kindProvider()
	}
	return local.New(o.local)
}

func newClusterCommand() *cobra.Command {
	o := newClusterOptions()
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Bring a single-node Kubernetes cluster with podvm up or down (for conformance)",
		Long: `Runs a real single-node Kubernetes (v1.37) from host processes: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet whose CRI is
a private containerd with the runc, podvm, runc-fakevm (the fake-VM baseline) and
test-handler handlers, and the RuntimeClasses runc, podvm and runc-fakevm. Images come from a registry on 127.0.0.1 that
serves locally built images; pods sit on a bridge and reach only the host.

Everything lives under --cluster-dir; 'down' stops every process, removes every pod
(so every pod VM is torn down) and undoes each change to the host. The binaries
come from 'make conformance' (or ci/install-tools.sh kubernetes etcd).`,
	}
	o.addFlags(cmd)
	cmd.AddCommand(newRestartContainerdCommand(&o.local.Dir), newFactoryServiceCommand(&o.local.Dir), newClusterUpCommand(o), newClusterDownCommand(o),
		newClusterStatusCommand(o), newKindConfigCommand(o), newServeRegistryCommand(o))
	return cmd
}

func newClusterUpCommand(o *clusterOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Start the cluster (prints the kubeconfig to use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err := o.Provider().Up(ctx, cmd.ErrOrStderr())
			return err
		},
	}
}

func newClusterDownCommand(o *clusterOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the cluster and remove everything it added to the host (logs are kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Provider().Down(context.WithoutCancel(cmd.Context()), cmd.ErrOrStderr())
		},
	}
}

// clusterStatus is what `podvm cluster status -o json|yaml` prints.
type clusterStatus struct {
	Provider   string             `json:"provider" yaml:"provider"`
	Healthy    bool               `json:"healthy" yaml:"healthy"`
	Components []clusterComponent `json:"components" yaml:"components"`
}

type clusterComponent struct {
	Name   string `json:"name" yaml:"name"`
	PID    int    `json:"pid,omitempty" yaml:"pid,omitempty"`
	Up     bool   `json:"up" yaml:"up"`
	Detail string `json:"detail,omitempty" yaml:"detail,omitempty"`
	Log    string `json:"log,omitempty" yaml:"log,omitempty"`
}

func newClusterStatus(st *cluster.Status) clusterStatus {
	out := clusterStatus{Provider: st.Provider, Healthy: st.Healthy(), Components: []clusterComponent{}}
	for _, c := range st.Components {
		out.Components = append(out.Components, clusterComponent(c))
	}
	return out
}

func newClusterStatusCommand(o *clusterOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each process of the cluster and whether the node is Ready (exit 1 if not healthy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.Provider().Status(cmd.Context())
			if err != nil {
				return err
			}
			if output != outputText {
				err = writeOutput(cmd.OutOrStdout(), output, newClusterStatus(st))
			} else {
				fmt.Fprint(cmd.OutOrStdout(), st)
			}
			if err == nil && !st.Healthy() {
				err = fmt.Errorf("cluster is not healthy")
			}
			return err
		},
	}
	outputFlag(cmd, &output, outputJSON, outputYAML)
	return cmd
}

func newKindConfigCommand(o *clusterOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "kind-config",
		Short: "Print the kind cluster configuration podvm uses (/dev/kvm and podvm mounted into the nodes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			text, err := o.kindProvider().Config()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), text)
			return nil
		},
	}
}

func newServeRegistryCommand(o *clusterOptions) *cobra.Command {
	var addrFile, hostsDir string
	serve := &cobra.Command{
		Use:    "serve-registry",
		Short:  "Serve the cluster's images on 127.0.0.1 (started by 'cluster up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			l := o.local
			return local.ServeRegistry(ctx, addrFile, hostsDir, l.Busybox, l.Testbin, l.Agnhost)
		},
	}
	serve.Flags().StringVar(&addrFile, "addr-file", "", "file to write host:port to once serving")
	serve.Flags().StringVar(&hostsDir, "hosts-dir", "", "containerd certs.d directory to point at the registry")
	return serve
}

// newRestartContainerdCommand restarts a local cluster's containerd in
// place. The local cluster has no systemd, so this is what the podvm
// installer runs there as its --restart-command, chrooted into the node.
func newRestartContainerdCommand(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:    "restart-containerd",
		Hidden: true,
		Short:  "Restart the local cluster's containerd in its own namespaces and cgroups (the installer's --restart-command there)",
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

// newFactoryServiceCommand starts, restarts or stops the VM cache's daemon
// on a local cluster's node: what the podvm installer runs there as its
// --factory-command, chrooted into the node (the local cluster has no
// systemd).
func newFactoryServiceCommand(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:    "factory-service start|restart|stop [-- DAEMON-COMMAND...]",
		Hidden: true,
		Short:  "Start, restart or stop the VM cache's daemon of a local cluster (the installer's --factory-command there)",
		Long: `Runs the VM cache's daemon (podvm factory serve, the DAEMON-COMMAND) on a
local cluster's node as its component podvm-factory, in containerd's namespaces
and cgroups, its log in the cluster's logs/podvm-factory.log: 'podvm cluster
status' shows it and 'down' stops it. start leaves a running daemon as it is;
it fails, with the log's last lines, when the daemon exits within 3 s. The podvm
installer DaemonSet runs it chrooted into the node when the node's configuration
has factory.mode = "cache" (docs/deploy.md).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Minute)
			defer cancel()
			return local.FactoryService(ctx, *dir, args[0], args[1:], cmd.OutOrStdout())
		},
	}
}
