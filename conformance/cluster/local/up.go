package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/fakevm"
	"github.com/podvm/podvm/internal/hostbed"
)

// Up's steps, in kind's create/actions shape: up plans the host, then runs
// each action in turn; an action prints its one line, does its job, and
// records in the state whatever Down must undo before it does it.

// action is one step of up.
type action func(ctx context.Context, s *state, step stepf) error

// stepf prints a step's line.
type stepf func(format string, a ...any)

// up prepares the state directory, plans the host and runs the actions;
// on error what was started stays for Down, which the saved state guides.
func (p *Provider) up(ctx context.Context, out io.Writer) (*cluster.Cluster, error) {
	step := func(format string, a ...any) { fmt.Fprintf(out, "==> "+format+"\n", a...) }
	if err := p.resetDirs(); err != nil {
		return nil, err
	}
	s, err := p.planHost()
	if err != nil {
		return nil, err
	}
	for _, act := range []action{
		p.createNetwork, p.writeCertificates, p.startRegistry, p.startEtcd, p.startContainerd, p.startFactory,
		p.startAPIServer, p.startControllers, p.startKubelet, p.applyRuntimeClasses,
	} {
		if err := act(ctx, &s, step); err != nil {
			return nil, err
		}
	}
	return p.Cluster(), nil
}

// resetDirs empties the state directory's parts: logs of earlier runs are
// moved out of the way, the rest starts empty.
func (p *Provider) resetDirs() error {
	for _, sub := range []string{"run", "logs", "pki", "kubeconfigs", "cni", "containerd", "etcd", "kubelet", "pod-logs"} {
		os.RemoveAll(filepath.Join(p.opts.Dir, sub))
		if err := os.MkdirAll(filepath.Join(p.opts.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	return os.Chmod(p.l.etcdData(), 0o700)
}

// planHost chooses the pod and service networks, records what the host
// holds before Up changes it (iptables chains, kubepods cgroups), saves
// that state for Down, and checks that the cluster's ports are free.
func (p *Provider) planHost() (state, error) {
	o := p.opts
	nets, err := freePrefixes(2)
	if err != nil {
		return state{}, err
	}
	s := state{
		NodeName: o.NodeName, PodCIDR: nets[0], ServiceCIDR: nets[1], Bridge: o.Bridge,
		NodeIP: nets[0].Addr().Next(), APIServerPort: o.APIServerPort, EtcdPort: o.EtcdPort, KubeletPort: o.KubeletPort,
		ChainsBefore: clusterChains.Snapshot(), CgroupsBefore: map[string]bool{},
	}
	for _, d := range kubepodsDirs(o.CgroupRoot) {
		_, err := os.Stat(d)
		s.CgroupsBefore[d] = err == nil
	}
	s.HostsLine = fmt.Sprintf("%s %s # podvm cluster (removed by 'podvm cluster down')", s.NodeIP, s.NodeName)
	if err := p.saveState(s); err != nil {
		return s, err
	}
	for _, port := range []int{s.APIServerPort, s.EtcdPort, s.EtcdPort + 1, s.KubeletPort} {
		if dialReady("tcp", fmt.Sprintf("127.0.0.1:%d", port))() == nil {
			return s, fmt.Errorf("port %d on 127.0.0.1 is taken by another program: stop it or choose other ports (--apiserver-port, --etcd-port, --kubelet-port)", port)
		}
	}
	return s, nil
}

// createNetwork creates the pod bridge holding the node's address, names
// the node in /etc/hosts, and writes the CNI configuration and the pods'
// empty resolv.conf.
func (p *Provider) createNetwork(_ context.Context, s *state, step stepf) error {
	l := p.l
	step("network: bridge %s, node %s at %s, pods %s", s.Bridge, s.NodeName, s.NodeIP, s.PodCIDR)
	if _, err := hostbed.CreateBridge(s.Bridge, netip.PrefixFrom(s.NodeIP, s.PodCIDR.Bits())); err != nil {
		return err
	}
	if err := addHostsLine(s.HostsLine); err != nil {
		return fmt.Errorf("add %s to %s: %w", s.NodeName, hostsFile, err)
	}
	if _, err := cniConfig(l, *s).Write(l.cniConfDir()); err != nil {
		return err
	}
	return os.WriteFile(l.emptyResolvConf(), []byte("# no DNS: pods of this cluster must not reach the host's resolver\n"), 0o644)
}

// writeCertificates writes the cluster's CA, certificates and kubeconfigs.
func (p *Provider) writeCertificates(_ context.Context, s *state, step stepf) error {
	step("certificates and kubeconfigs")
	if err := p.writePKI(*s); err != nil {
		return fmt.Errorf("write certificates: %w", err)
	}
	return nil
}

// startRegistry starts the image registry daemon (`podvm cluster
// serve-registry`) and waits until it has written its address.
func (p *Provider) startRegistry(ctx context.Context, _ *state, step stepf) error {
	o, l := p.opts, p.l
	step("image registry on 127.0.0.1 (busybox, pause, agnhost, built locally)")
	if _, err := startDaemon(l, daemon{name: "registry", path: o.Podvm, args: []string{"cluster", "serve-registry",
		"--addr-file", l.registryAddrFile(), "--hosts-dir", l.certsDir(),
		"--busybox", o.Busybox, "--testbin", o.Testbin, "--agnhost", o.Agnhost}}); err != nil {
		return err
	}
	return waitFor(ctx, l, "registry", 2*time.Minute, func() error {
		_, err := os.Stat(l.registryAddrFile())
		return err
	})
}

// startEtcd starts etcd on loopback and waits until it is healthy.
func (p *Provider) startEtcd(ctx context.Context, s *state, step stepf) error {
	l := p.l
	step("etcd %s", EtcdVersion)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", s.EtcdPort+1)
	if _, err := startDaemon(l, daemon{name: "etcd", path: p.opts.Etcd, args: []string{
		"--name", "podvm", "--data-dir", l.etcdData(),
		"--listen-client-urls", s.etcdURL(), "--advertise-client-urls", s.etcdURL(),
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "podvm=" + peerURL,
		"--listen-metrics-urls", "", "--log-level", "warn",
	}}); err != nil {
		return err
	}
	return waitFor(ctx, l, "etcd", time.Minute, httpOK(s.etcdURL()+"/health"))
}

// startContainerd writes containerd's configuration (linked at the node's
// standard path when that is free), starts it as a daemon and waits for
// its socket.
func (p *Provider) startContainerd(ctx context.Context, s *state, step stepf) error {
	o, l := p.opts, p.l
	handlers := "runc, podvm, " + TemplateClass + ", " + CacheClass + ", runc-fakevm, test-handler"
	if o.WithoutPodvmHandler {
		handlers = "runc, test-handler (no podvm: podvm deploy adds it)"
	}
	step("containerd %s with handlers %s", ContainerdVersion, handlers)
	if err := os.WriteFile(l.containerdConfig(), []byte(containerdConfig(l, o)), 0o644); err != nil {
		return err
	}
	if err := p.linkNodeContainerdConfig(s); err != nil {
		return err
	}
	binary := filepath.Join(o.ContainerdDir, "containerd")
	if _, err := startDaemon(l, daemon{name: "containerd", path: binary,
		args: []string{"--config", l.containerdConfig(), "--log-level", "info"},
		// The fake VM's wrapper runs the runc handler's runc.
		env: []string{hostbed.ContainerdPath(binary, filepath.Join(o.PodvmPrefix, "bin")), fakevm.RuncEnv + "=" + o.Runc},
	}); err != nil {
		return err
	}
	return waitFor(ctx, l, "containerd", time.Minute, dialReady("unix", l.containerdSocket()))
}

// startAPIServer starts kube-apiserver on the node's address and waits
// until it is ready.
func (p *Provider) startAPIServer(ctx context.Context, s *state, step stepf) error {
	l := p.l
	step("kube-apiserver %s on %s", KubernetesVersion, s.apiServerAddr())
	if _, err := startDaemon(l, daemon{name: "kube-apiserver", path: p.opts.kube("kube-apiserver"), args: []string{
		"--etcd-servers", s.etcdURL(),
		"--bind-address", s.NodeIP.String(), "--advertise-address", s.NodeIP.String(),
		"--secure-port", fmt.Sprint(s.APIServerPort),
		"--tls-cert-file", l.pki("apiserver.crt"), "--tls-private-key-file", l.pki("apiserver.key"),
		"--client-ca-file", l.pki("ca.crt"),
		"--kubelet-client-certificate", l.pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", l.pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", l.pki("ca.crt"),
		"--kubelet-preferred-address-types", "InternalIP",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", l.pki("sa.pub"), "--service-account-signing-key-file", l.pki("sa.key"),
		"--service-cluster-ip-range", s.ServiceCIDR.String(),
		"--authorization-mode", "Node,RBAC", "--allow-privileged=true",
		"--profiling=false", "--v=1",
	}}); err != nil {
		return err
	}
	return waitFor(ctx, l, "kube-apiserver", 2*time.Minute, p.kubectlOK("get", "--raw", "/readyz"))
}

// startControllers starts kube-controller-manager and kube-scheduler;
// applyRuntimeClasses waits for the former's work.
func (p *Provider) startControllers(_ context.Context, s *state, step stepf) error {
	l := p.l
	step("kube-controller-manager and kube-scheduler")
	if _, err := startDaemon(l, daemon{name: "kube-controller-manager", path: p.opts.kube("kube-controller-manager"), args: []string{
		"--kubeconfig", l.kubeconfig("controller-manager"),
		"--authentication-kubeconfig", l.kubeconfig("controller-manager"),
		"--authorization-kubeconfig", l.kubeconfig("controller-manager"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--service-account-private-key-file", l.pki("sa.key"), "--root-ca-file", l.pki("ca.crt"),
		"--use-service-account-credentials=true", "--leader-elect=false",
		"--service-cluster-ip-range", s.ServiceCIDR.String(),
		"--profiling=false", "--v=1",
	}}); err != nil {
		return err
	}
	_, err := startDaemon(l, daemon{name: "kube-scheduler", path: p.opts.kube("kube-scheduler"), args: []string{
		"--kubeconfig", l.kubeconfig("scheduler"),
		"--authentication-kubeconfig", l.kubeconfig("scheduler"),
		"--authorization-kubeconfig", l.kubeconfig("scheduler"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--leader-elect=false", "--profiling=false", "--v=1",
	}})
	return err
}

// startKubelet makes the kubelet's cgroupRoot (recording what it made),
// writes its configuration, starts it, waits until the node is Ready, and
// checks that every component still runs.
func (p *Provider) startKubelet(ctx context.Context, s *state, step stepf) error {
	o, l := p.opts, p.l
	step("kubelet on node %s", s.NodeName)
	created, err := hostbed.MakeCgroup(o.CgroupRoot)
	s.CgroupRoots = created
	if err := errors.Join(err, p.saveState(*s)); err != nil {
		return err
	}
	if err := os.WriteFile(l.kubeletConfig(), []byte(kubeletConfig(l, *s, o)), 0o644); err != nil {
		return err
	}
	if _, err := startDaemon(l, daemon{name: "kubelet", path: o.kube("kubelet"), args: []string{
		"--config", l.kubeletConfig(), "--kubeconfig", l.kubeconfig("kubelet"),
		"--hostname-override", s.NodeName, "--node-ip", s.NodeIP.String(),
		"--root-dir", l.kubeletRoot(), "--cert-dir", filepath.Join(l.kubeletRoot(), "pki"), "--v=1",
	}}); err != nil {
		return err
	}
	if err := waitFor(ctx, l, "kubelet", 3*time.Minute, p.kubectlOK("wait", "--for=condition=Ready", "--timeout=5s", "node/"+s.NodeName)); err != nil {
		return err
	}
	for _, c := range p.running() {
		if pid, why := daemonPID(l, c); pid == 0 {
			return fmt.Errorf("%s %s; last lines of %s:\n%s", c, why, l.log(c), hostbed.TailLines(l.log(c), 25))
		}
	}
	return nil
}

// applyRuntimeClasses declares the runc (and podvm) RuntimeClasses and
// waits for the default service account, which pods need and the
// controller manager creates.
func (p *Provider) applyRuntimeClasses(ctx context.Context, _ *state, step stepf) error {
	o, l := p.opts, p.l
	if o.WithoutPodvmHandler {
		step("RuntimeClass runc")
	} else {
		step("RuntimeClasses runc, podvm, %s and %s (overhead %s memory, %s cpu each) and runc-fakevm", TemplateClass, CacheClass, o.OverheadMemory, o.OverheadCPU)
	}
	if err := os.WriteFile(l.runtimeClasses(), []byte(runtimeClassesManifest(o)), 0o644); err != nil {
		return err
	}
	if err := p.kubectl(ctx, "apply", "-f", l.runtimeClasses()); err != nil {
		return err
	}
	return waitFor(ctx, l, "kube-controller-manager", 2*time.Minute, p.kubectlOK("get", "serviceaccount", "default", "-n", "default"))
}
