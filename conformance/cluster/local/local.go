// Package local is the conformance harness's own cluster: a real
// single-node Kubernetes run as host processes (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet) with a private
// containerd as its CRI, offering the runc, podvm and test-handler
// handlers. Images come from a local registry on 127.0.0.1; pods live on
// a bridge this package creates and reach nothing beyond the host.
//
// Everything lives under one state directory; Down stops every process,
// removes every pod (so each pod VM is torn down by its shim), and undoes
// each change to the host.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/podvm/podvm/ci/testbed"
	"github.com/podvm/podvm/conformance/cluster"
)

// Versions the local cluster is built from; ci/install-tools.sh builds the
// same ones (a test keeps the two in step).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
	ContainerdVersion = "v2.4.2"
	RuncVersion       = "v1.5.2"
	CRIToolsVersion   = "v1.37.0"
)

// SandboxImage is the pause image containerd runs pod sandboxes from.
const SandboxImage = "registry.k8s.io/pause:3.10.2"

// Options says where the cluster lives and which binaries it runs.
type Options struct {
	Dir      string // state directory
	NodeName string
	// Bridge is the pod network's bridge; a fixed name, so that a bridge
	// left by a crashed cluster is found and replaced.
	Bridge string
	// CgroupRoot is the kubelet's cgroupRoot: kubepods goes below it.
	CgroupRoot string

	KubeBinDir    string // kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl
	Etcd          string
	ContainerdDir string // containerd, containerd-shim-runc-v2
	Runc          string
	Crictl        string
	CNIBinDir     string
	PodvmPrefix   string // `podvm install --prefix`: bin/containerd-shim-podvm-v2, share/podvm/config.toml

	// Registry content: busybox-static, the testbin program (pause), and
	// agnhost (the image upstream e2e specs exec into).
	Podvm   string // the podvm binary, which serves the registry
	Busybox string
	Testbin string
	Agnhost string

	APIServerPort int
	EtcdPort      int
	KubeletPort   int
	PodPidsLimit  int
	// WithoutPodvmHandler leaves the podvm handler out of containerd and
	// the podvm RuntimeClass out of the cluster: a node as podvm deploy
	// finds it (PodvmPrefix is then not needed).
	WithoutPodvmHandler bool
	// RuntimeClass podvm's overhead.podFixed.
	OverheadMemory string
	OverheadCPU    string
}

// DefaultOptions are the paths `make conformance` installs to.
func DefaultOptions() Options {
	cache := os.Getenv("PODVM_CACHE")
	if cache == "" {
		cache = "/var/cache/podvm"
	}
	tool := func(name, version string) string { return filepath.Join(cache, "tools", name+"-"+version, "bin") }
	self, _ := os.Executable()
	return Options{
		Dir:            "/var/lib/podvm/cluster",
		NodeName:       "podvm-node",
		Bridge:         "podvm-k8s0",
		CgroupRoot:     "/",
		KubeBinDir:     tool("kubernetes", KubernetesVersion),
		Etcd:           filepath.Join(tool("etcd", EtcdVersion), "etcd"),
		ContainerdDir:  tool("containerd", ContainerdVersion),
		Runc:           filepath.Join(tool("runc", RuncVersion), "runc"),
		Crictl:         filepath.Join(tool("cri-tools", CRIToolsVersion), "crictl"),
		CNIBinDir:      "/usr/lib/cni",
		PodvmPrefix:    "/opt/podvm",
		Podvm:          self,
		Busybox:        "/bin/busybox",
		Testbin:        filepath.Join(filepath.Dir(self), "podvm-testbin"),
		Agnhost:        filepath.Join(tool("agnhost", KubernetesVersion), "agnhost"),
		APIServerPort:  6443,
		EtcdPort:       2379,
		KubeletPort:    10250,
		PodPidsLimit:   1024,
		OverheadMemory: "512Mi",
		OverheadCPU:    "250m",
	}
}

func (o Options) shim() string {
	return filepath.Join(o.PodvmPrefix, "bin", "containerd-shim-podvm-v2")
}
func (o Options) podvmConfig() string {
	return filepath.Join(o.PodvmPrefix, "share", "podvm", "config.toml")
}
func (o Options) kube(name string) string {
	return filepath.Join(o.KubeBinDir, name)
}

// Provider runs the local cluster.
type Provider struct {
	opts Options
	l    layout
}

// New returns a local provider; nothing happens until Up.
func New(o Options) *Provider { return &Provider{opts: o, l: layout{dir: o.Dir}} }

// Name implements cluster.Provider.
func (p *Provider) Name() string { return "local" }

// components in start order; Down stops them in reverse, except that the
// kubelet goes first so it restarts nothing while pods are removed.
var components = []string{"registry", "etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"}

// Cluster describes the cluster this provider runs (whether or not it is up).
func (p *Provider) Cluster() *cluster.Cluster {
	classes := map[string]string{"runc": "runc", "podvm": "podvm"}
	if p.opts.WithoutPodvmHandler {
		delete(classes, "podvm")
	}
	return &cluster.Cluster{
		Kubeconfig:     p.l.kubeconfig("admin"),
		RuntimeClasses: classes,
		CRIEndpoint:    p.l.criEndpoint(),
		LogDir:         filepath.Join(p.opts.Dir, "logs"),
	}
}

// preflight names every missing binary with the command that installs it.
func (p *Provider) preflight() error {
	o := p.opts
	type need struct{ path, fix string }
	fixTools := "make conformance (or: bash ci/install-tools.sh kubernetes etcd)"
	needs := []need{
		{o.kube("kube-apiserver"), fixTools}, {o.kube("kube-controller-manager"), fixTools},
		{o.kube("kube-scheduler"), fixTools}, {o.kube("kubelet"), fixTools}, {o.kube("kubectl"), fixTools},
		{o.Etcd, fixTools}, {o.Agnhost, "bash ci/install-tools.sh agnhost"},
		{filepath.Join(o.ContainerdDir, "containerd"), "bash ci/install-tools.sh containerd"},
		{filepath.Join(o.ContainerdDir, "containerd-shim-runc-v2"), "bash ci/install-tools.sh containerd"},
		{o.Runc, "bash ci/install-tools.sh runc"}, {o.Crictl, "bash ci/install-tools.sh cri-tools"},
		{filepath.Join(o.CNIBinDir, "bridge"), "apt-get install containernetworking-plugins"},
		{filepath.Join(o.CNIBinDir, "portmap"), "apt-get install containernetworking-plugins"},
		{o.Busybox, "apt-get install busybox-static"},
		{o.Testbin, "make spec-binary builds it (CGO_ENABLED=0 go build -o _output/bin/podvm-testbin ./ci/testregistry/testbin)"},
		{o.Podvm, "make build"},
	}
	if !o.WithoutPodvmHandler {
		needs = append(needs, need{o.shim(), "podvm install --prefix " + o.PodvmPrefix + " (make install-dev for _output)"},
			need{o.podvmConfig(), "podvm install --prefix " + o.PodvmPrefix})
	}
	var missing []string
	for _, n := range needs {
		if n.path == "" {
			missing = append(missing, "(a required path is unset) - fix: "+n.fix)
			continue
		}
		if _, err := os.Stat(n.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s - fix: %s", n.path, n.fix))
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges - fix: run as root (the kubelet and containerd need them)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the local cluster cannot start, missing:\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}

func (p *Provider) loadState() (state, bool) {
	var s state
	b, err := os.ReadFile(p.l.stateFile())
	if err != nil {
		return s, false
	}
	return s, json.Unmarshal(b, &s) == nil
}

func (p *Provider) saveState(s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p.l.stateFile(), b, 0o644)
}

// Up implements cluster.Provider.
func (p *Provider) Up(ctx context.Context, out io.Writer) (*cluster.Cluster, error) {
	if err := p.preflight(); err != nil {
		return nil, err
	}
	if _, ok := p.loadState(); ok {
		for _, c := range components {
			if pid, _ := daemonPID(p.l, c); pid != 0 {
				return nil, fmt.Errorf("a local cluster is already running in %s (%s is pid %d): use it, or run 'podvm cluster down' first", p.opts.Dir, c, pid)
			}
		}
		fmt.Fprintln(out, "==> cleaning up a cluster that was not taken down")
		if err := p.Down(ctx, out); err != nil {
			return nil, fmt.Errorf("clean up the previous cluster: %w", err)
		}
	}
	start := time.Now()
	c, err := p.up(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("%w\n(logs in %s; 'podvm cluster down' removes what was started)", err, filepath.Join(p.opts.Dir, "logs"))
	}
	fmt.Fprintf(out, "==> cluster up in %s: export KUBECONFIG=%s\n", time.Since(start).Round(100*time.Millisecond), c.Kubeconfig)
	return c, nil
}

func (p *Provider) up(ctx context.Context, out io.Writer) (*cluster.Cluster, error) {
	o, l := p.opts, p.l
	step := func(format string, a ...any) { fmt.Fprintf(out, "==> "+format+"\n", a...) }

	// Keep logs of earlier runs out of the way, but the rest starts empty.
	for _, sub := range []string{"run", "logs", "pki", "kubeconfigs", "cni", "containerd", "etcd", "kubelet", "pod-logs"} {
		os.RemoveAll(filepath.Join(o.Dir, sub))
		if err := os.MkdirAll(filepath.Join(o.Dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	os.Chmod(l.etcdData(), 0o700)

	nets, err := freePrefixes(2)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	for _, port := range []int{s.APIServerPort, s.EtcdPort, s.EtcdPort + 1, s.KubeletPort} {
		if dialReady("tcp", fmt.Sprintf("127.0.0.1:%d", port))() == nil {
			return nil, fmt.Errorf("port %d on 127.0.0.1 is taken by another program: stop it or choose other ports (--apiserver-port, --etcd-port, --kubelet-port)", port)
		}
	}

	step("network: bridge %s, node %s at %s, pods %s", s.Bridge, s.NodeName, s.NodeIP, s.PodCIDR)
	if err := createBridge(s.Bridge, s.NodeIP, s.PodCIDR.Bits()); err != nil {
		return nil, err
	}
	if err := addHostsLine(s.HostsLine); err != nil {
		return nil, fmt.Errorf("add %s to %s: %w", s.NodeName, hostsFile, err)
	}
	if _, err := cniConfig(l, s).Write(l.cniConfDir()); err != nil {
		return nil, err
	}
	if err := os.WriteFile(l.emptyResolvConf(), []byte("# no DNS: pods of this cluster must not reach the host's resolver\n"), 0o644); err != nil {
		return nil, err
	}

	step("certificates and kubeconfigs")
	if err := p.writePKI(s); err != nil {
		return nil, fmt.Errorf("write certificates: %w", err)
	}

	step("image registry on 127.0.0.1 (busybox, pause, agnhost, built locally)")
	if _, err := startDaemon(l, daemon{name: "registry", path: o.Podvm, args: []string{"cluster", "serve-registry",
		"--addr-file", l.registryAddrFile(), "--hosts-dir", l.certsDir(),
		"--busybox", o.Busybox, "--testbin", o.Testbin, "--agnhost", o.Agnhost}}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, l, "registry", 2*time.Minute, func() error {
		_, err := os.Stat(l.registryAddrFile())
		return err
	}); err != nil {
		return nil, err
	}

	step("etcd %s", EtcdVersion)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", s.EtcdPort)
	if _, err := startDaemon(l, daemon{name: "etcd", path: o.Etcd, args: []string{
		"--name", "podvm", "--data-dir", l.etcdData(),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", s.EtcdPort+1),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", s.EtcdPort+1),
		"--initial-cluster", fmt.Sprintf("podvm=http://127.0.0.1:%d", s.EtcdPort+1),
		"--listen-metrics-urls", "", "--log-level", "warn",
	}}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, l, "etcd", time.Minute, httpOK(etcdURL+"/health")); err != nil {
		return nil, err
	}

	handlers := "runc, podvm, test-handler"
	if o.WithoutPodvmHandler {
		handlers = "runc, test-handler (no podvm: podvm deploy adds it)"
	}
	step("containerd %s with handlers %s", ContainerdVersion, handlers)
	if err := os.WriteFile(l.containerdConfig(), []byte(containerdConfig(l, o)), 0o644); err != nil {
		return nil, err
	}
	if err := p.linkNodeContainerdConfig(&s); err != nil {
		return nil, err
	}
	if _, err := startDaemon(l, daemon{name: "containerd", path: filepath.Join(o.ContainerdDir, "containerd"),
		args: []string{"--config", l.containerdConfig(), "--log-level", "info"},
		env:  []string{testbed.ContainerdPath(filepath.Join(o.ContainerdDir, "containerd"), filepath.Join(o.PodvmPrefix, "bin"))},
	}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, l, "containerd", time.Minute, dialReady("unix", l.containerdSocket())); err != nil {
		return nil, err
	}

	step("kube-apiserver %s on %s", KubernetesVersion, s.apiServerAddr())
	if _, err := startDaemon(l, daemon{name: "kube-apiserver", path: o.kube("kube-apiserver"), args: []string{
		"--etcd-servers", etcdURL,
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
		return nil, err
	}
	if err := waitFor(ctx, l, "kube-apiserver", 2*time.Minute, p.kubectlOK("get", "--raw", "/readyz")); err != nil {
		return nil, err
	}

	step("kube-controller-manager and kube-scheduler")
	if _, err := startDaemon(l, daemon{name: "kube-controller-manager", path: o.kube("kube-controller-manager"), args: []string{
		"--kubeconfig", l.kubeconfig("controller-manager"),
		"--authentication-kubeconfig", l.kubeconfig("controller-manager"),
		"--authorization-kubeconfig", l.kubeconfig("controller-manager"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--service-account-private-key-file", l.pki("sa.key"), "--root-ca-file", l.pki("ca.crt"),
		"--use-service-account-credentials=true", "--leader-elect=false",
		"--service-cluster-ip-range", s.ServiceCIDR.String(),
		"--profiling=false", "--v=1",
	}}); err != nil {
		return nil, err
	}
	if _, err := startDaemon(l, daemon{name: "kube-scheduler", path: o.kube("kube-scheduler"), args: []string{
		"--kubeconfig", l.kubeconfig("scheduler"),
		"--authentication-kubeconfig", l.kubeconfig("scheduler"),
		"--authorization-kubeconfig", l.kubeconfig("scheduler"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--leader-elect=false", "--profiling=false", "--v=1",
	}}); err != nil {
		return nil, err
	}

	step("kubelet on node %s", s.NodeName)
	created, err := createCgroupRoot(o.CgroupRoot)
	s.CgroupRoots = created
	if err := errors.Join(err, p.saveState(s)); err != nil {
		return nil, err
	}
	if err := os.WriteFile(l.kubeletConfig(), []byte(kubeletConfig(l, s, o)), 0o644); err != nil {
		return nil, err
	}
	if _, err := startDaemon(l, daemon{name: "kubelet", path: o.kube("kubelet"), args: []string{
		"--config", l.kubeletConfig(), "--kubeconfig", l.kubeconfig("kubelet"),
		"--hostname-override", s.NodeName, "--node-ip", s.NodeIP.String(),
		"--root-dir", l.kubeletRoot(), "--cert-dir", filepath.Join(l.kubeletRoot(), "pki"), "--v=1",
	}}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, l, "kubelet", 3*time.Minute, p.kubectlOK("wait", "--for=condition=Ready", "--timeout=5s", "node/"+s.NodeName)); err != nil {
		return nil, err
	}
	for _, c := range components {
		if pid, why := daemonPID(l, c); pid == 0 {
			return nil, fmt.Errorf("%s %s; last lines of %s:\n%s", c, why, l.log(c), tail(l.log(c), 25))
		}
	}

	if o.WithoutPodvmHandler {
		step("RuntimeClass runc")
	} else {
		step("RuntimeClasses runc and podvm (overhead %s memory, %s cpu)", o.OverheadMemory, o.OverheadCPU)
	}
	if err := os.WriteFile(l.runtimeClasses(), []byte(runtimeClassesManifest(o)), 0o644); err != nil {
		return nil, err
	}
	if err := p.kubectl(ctx, "apply", "-f", l.runtimeClasses()); err != nil {
		return nil, err
	}
	// Pods need the namespace's service account, which the controller
	// manager creates.
	if err := waitFor(ctx, l, "kube-controller-manager", 2*time.Minute, p.kubectlOK("get", "serviceaccount", "default", "-n", "default")); err != nil {
		return nil, err
	}
	return p.Cluster(), nil
}

func (p *Provider) writePKI(s state) error {
	dir := filepath.Join(p.opts.Dir, "pki")
	ca, err := newAuthority(dir)
	if err != nil {
		return err
	}
	nodeIP := s.NodeIP.AsSlice()
	reqs := []certRequest{
		{file: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", s.NodeName},
			ips: []net.IP{nodeIP, s.serviceIP().AsSlice(), net.IPv4(127, 0, 0, 1)}},
		{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{file: "admin", cn: "podvm-admin", orgs: []string{"system:masters"}},
		{file: "controller-manager", cn: "system:kube-controller-manager"},
		{file: "scheduler", cn: "system:kube-scheduler"},
		{file: "kubelet", cn: "system:node:" + s.NodeName, orgs: []string{"system:nodes"}},
		{file: "kubelet-server", cn: s.NodeName, server: true, dns: []string{s.NodeName}, ips: []net.IP{nodeIP}},
	}
	for _, r := range reqs {
		if err := ca.issue(dir, r); err != nil {
			return err
		}
	}
	if err := writeServiceAccountKey(dir); err != nil {
		return err
	}
	for user, cert := range map[string]string{"admin": "admin", "controller-manager": "controller-manager", "scheduler": "scheduler", "kubelet": "kubelet"} {
		if err := os.WriteFile(p.l.kubeconfig(user), []byte(kubeconfigFor(p.l, s, user, cert)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (p *Provider) kubectl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, p.opts.kube("kubectl"), append([]string{"--kubeconfig", p.l.kubeconfig("admin")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (p *Provider) kubectlOK(args ...string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return p.kubectl(ctx, args...)
	}
}

// Status implements cluster.Provider.
func (p *Provider) Status(ctx context.Context) (*cluster.Status, error) {
	st := &cluster.Status{Provider: "local"}
	s, ok := p.loadState()
	if !ok {
		return st, fmt.Errorf("no local cluster in %s: run 'podvm cluster up'", p.opts.Dir)
	}
	for _, c := range components {
		pid, why := daemonPID(p.l, c)
		st.Components = append(st.Components, cluster.Component{Name: c, PID: pid, Up: pid != 0, Detail: why, Log: p.l.log(c)})
	}
	nodeErr := p.kubectlOK("wait", "--for=condition=Ready", "--timeout=5s", "node/"+s.NodeName)()
	node := cluster.Component{Name: "node " + s.NodeName, Up: nodeErr == nil, Detail: "Ready"}
	if nodeErr != nil {
		node.Detail = nodeErr.Error()
	}
	st.Components = append(st.Components, node)
	return st, nil
}

// Down implements cluster.Provider.
func (p *Provider) Down(ctx context.Context, out io.Writer) error {
	l := p.l
	s, ok := p.loadState()
	if !ok {
		fmt.Fprintf(out, "==> no local cluster in %s\n", p.opts.Dir)
		return nil
	}
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	step := func(format string, a ...any) { fmt.Fprintf(out, "==> "+format+"\n", a...) }

	step("stopping the kubelet")
	fail(stopDaemon(l, "kubelet", 20*time.Second))
	if pid, _ := daemonPID(l, "containerd"); pid != 0 {
		step("removing every pod (each pod VM is torn down by its shim)")
		fail(p.removeAllPods(ctx))
	}
	for i := len(components) - 1; i >= 0; i-- {
		if c := components[i]; c != "kubelet" {
			step("stopping %s", c)
			fail(stopDaemon(l, c, 20*time.Second))
		}
	}
	fail(p.killOrphanShims())
	if failed := unmountAll(p.opts.Dir); len(failed) > 0 {
		fail(fmt.Errorf("unmount: %s", strings.Join(failed, "; ")))
	}
	for d, existed := range s.CgroupsBefore {
		if !existed {
			fail(removeCgroupTree(d))
		}
	}
	for _, d := range s.CgroupRoots {
		fail(removeCgroupTree(d))
	}
	step("removing bridge %s, /etc/hosts entry and iptables chains", s.Bridge)
	fail(deleteBridge(s.Bridge))
	fail(removeHostsLine(s.HostsLine))
	fail(p.unlinkNodeContainerdConfig(s))
	if s.ChainsBefore != nil {
		_, err := clusterChains.RemoveNew(s.ChainsBefore)
		fail(err)
	}
	if len(errs) == 0 {
		// Keep logs/ for whoever debugs the run; everything else goes.
		entries, _ := os.ReadDir(p.opts.Dir)
		for _, e := range entries {
			if e.Name() != "logs" {
				fail(os.RemoveAll(filepath.Join(p.opts.Dir, e.Name())))
			}
		}
		step("cluster down; logs kept in %s", filepath.Join(p.opts.Dir, "logs"))
	}
	return errors.Join(errs...)
}

// removeAllPods stops and removes every pod through CRI, as the kubelet
// would, so that CNI DEL runs and each shim tears its VM down.
func (p *Provider) removeAllPods(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	crictl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, p.opts.Crictl, append([]string{"--runtime-endpoint", p.l.criEndpoint(), "--image-endpoint", p.l.criEndpoint(), "--timeout", "2m"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := crictl("rm", "--all", "--force"); err != nil {
		return err
	}
	return crictl("rmp", "--all", "--force")
}

// killOrphanShims kills shims of our containerd still running after it
// stopped (a shim outlives containerd by design): they hold VMs.
func (p *Provider) killOrphanShims() error {
	sock := p.l.containerdSocket()
	entries, _ := os.ReadDir("/proc")
	var killed []string
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if strings.Contains(string(b), sock) {
			if proc, err := os.FindProcess(pid); err == nil && proc.Kill() == nil {
				killed = append(killed, fmt.Sprintf("%s (pid %d)", filepath.Base(args[0]), pid))
			}
		}
	}
	if len(killed) > 0 {
		return fmt.Errorf("killed shims left after containerd stopped (pods were not removed cleanly): %s", strings.Join(killed, ", "))
	}
	return nil
}

var _ cluster.Provider = (*Provider)(nil)

// httpOK is a readiness check: GET url answers 200.
func httpOK(url string) func() error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// nodeContainerdConfig is where tools expect a node's containerd
// configuration; upstream e2e [Feature:RuntimeHandler] specs read it to
// learn whether the node has the test-handler handler.
const nodeContainerdConfig = "/etc/containerd/config.toml"

// linkNodeContainerdConfig makes our containerd's config visible at the
// standard path when nothing is there; an operator's own file is never
// touched (the two specs that read it then skip, saying why).
func (p *Provider) linkNodeContainerdConfig(s *state) error {
	if _, err := os.Lstat(nodeContainerdConfig); err == nil {
		return nil
	}
	dir := filepath.Dir(nodeContainerdConfig)
	if _, err := os.Stat(dir); err != nil {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		s.CreatedEtcDir = true
	}
	if err := os.Symlink(p.l.containerdConfig(), nodeContainerdConfig); err != nil {
		return fmt.Errorf("link %s: %w", nodeContainerdConfig, err)
	}
	s.ConfigLink = true
	return p.saveState(*s)
}

func (p *Provider) unlinkNodeContainerdConfig(s state) error {
	if s.ConfigLink {
		if target, err := os.Readlink(nodeContainerdConfig); err == nil && target == p.l.containerdConfig() {
			if err := os.Remove(nodeContainerdConfig); err != nil {
				return err
			}
		}
	}
	if s.CreatedEtcDir {
		os.Remove(filepath.Dir(nodeContainerdConfig)) // only if empty
	}
	return nil
}
