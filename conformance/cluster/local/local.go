// Package local is the conformance harness's own cluster: a real
// single-node Kubernetes run as host processes (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet) with a private
// containerd as its CRI, offering the runc, podvm, runc-fakevm (the fake-VM
// baseline, conformance/fakevm) and test-handler handlers. Images come from a local registry on 127.0.0.1; pods live on
// a bridge this package creates and reach nothing beyond the host.
//
// This package is the control plane: the components as daemons (daemon.go),
// their PKI, configuration files (configs.go) and restart, and Up's steps
// (up.go). How the host is set up (the bridge, the registry and its images,
// containerd's configuration, cgroups, iptables chains, mounts) is
// internal/hostbed's, shared with the tests and the benchmarks.
//
// Everything lives under one state directory (layout.go); Down stops every
// process, removes every pod (so each pod VM is torn down by its shim), and
// undoes each change to the host.
package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/fakevm"
)

// Versions the local cluster is built from; ci/install-tools.sh builds the
// same ones (a test keeps the two in step).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
	ContainerdVersion = "v2.4.2"
	RuncVersion       = "v1.5.2"
	CRIToolsVersion   = "v1.37.0"
	// GinkgoVersion is the Ginkgo CLI that runs e2e.test in parallel; it
	// must be the Ginkgo compiled into e2e.test.
	GinkgoVersion = "v2.32.0"
)

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
	// FakeVMRunc is the fake-VM baseline's runc wrapper
	// (podvm-fakevm-runc), the runc-fakevm handler's binary; it runs Runc.
	FakeVMRunc string

	// Registry content: busybox-static, the testbin program (pause), and
	// agnhost (the image upstream e2e specs exec into).
	Podvm   string // the podvm binary, which serves the registry
	Busybox string
	Testbin string
	Agnhost string
	// Ginkgo is the Ginkgo CLI, for the node suite's parallel processes
	// (conformance.Options.NodeProcs); not part of the cluster.
	Ginkgo string

	APIServerPort int
	EtcdPort      int
	KubeletPort   int
	PodPidsLimit  int
	// WithoutPodvmHandler leaves the podvm, podvm-template, podvm-cache
	// and runc-fakevm handlers out of containerd, their RuntimeClasses out
	// of the cluster and the VM cache's daemon out of the node: a node as
	// podvm deploy finds it (PodvmPrefix and FakeVMRunc are then not
	// needed).
	WithoutPodvmHandler bool
	// CachePool is the VM cache daemon's pool size on this cluster
	// (DefaultCachePool: what the podvm-cache class's spec run takes; 0
	// keeps the pool empty, which shows the origin checks failing); below
	// 0 it is config-cache.toml's factory.cache_size.
	CachePool int
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
		FakeVMRunc:     filepath.Join(filepath.Dir(self), fakevm.WrapperName),
		Agnhost:        filepath.Join(tool("agnhost", KubernetesVersion), "agnhost"),
		Ginkgo:         filepath.Join(tool("ginkgo", GinkgoVersion), "ginkgo"),
		APIServerPort:  6443,
		EtcdPort:       2379,
		KubeletPort:    10250,
		PodPidsLimit:   1024,
		CachePool:      DefaultCachePool,
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

// TemplateClass is the runtime class (and handler) whose pod VMs are
// clones of a VM template: podvm's config-template.toml.
const TemplateClass = "podvm-template"

func (o Options) podvmTemplateConfig() string {
	return filepath.Join(o.PodvmPrefix, "share", "podvm", "config-template.toml")
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
// kubelet goes first so it restarts nothing while pods are removed (and so
// the VM cache's daemon stops once no pod holds a VM of it).
var components = []string{"registry", "etcd", "containerd", factoryComponent, "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"}

// Cluster describes the cluster this provider runs (whether or not it is up).
func (p *Provider) Cluster() *cluster.Cluster {
	return &cluster.Cluster{
		Kubeconfig:      p.l.kubeconfig("admin"),
		RuntimeClasses:  cluster.Handlers(runtimeClasses(p.opts)),
		CRIEndpoint:     p.l.criEndpoint(),
		LogDir:          filepath.Join(p.opts.Dir, "logs"),
		CacheClasses:    cacheClasses(p.opts),
		TemplateClasses: templateClasses(p.opts),
		ShimLog:         p.l.log("containerd"),
		FactoryReady:    p.FactoryReady,
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
		{o.Testbin, "make spec-binary builds it (CGO_ENABLED=0 go build -o _output/bin/podvm-testbin ./internal/hostbed/testbin)"},
		{o.Podvm, "make build"},
	}
	if !o.WithoutPodvmHandler {
		needs = append(needs, need{o.shim(), "podvm install --prefix " + o.PodvmPrefix + " (make install-dev for _output)"},
			need{o.podvmConfig(), "podvm install --prefix " + o.PodvmPrefix},
			need{o.podvmTemplateConfig(), "podvm install --prefix " + o.PodvmPrefix},
			need{o.podvmCacheConfig(), "podvm install --prefix " + o.PodvmPrefix},
			need{o.FakeVMRunc, "make conformance builds it (go build -o _output/bin/" + fakevm.WrapperName + " ./conformance/fakevm/cmd/" + fakevm.WrapperName + ")"})
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

// kubectl runs kubectl as the cluster admin; its output goes into the
// error.
func (p *Provider) kubectl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, p.opts.kube("kubectl"), append([]string{"--kubeconfig", p.l.kubeconfig("admin")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// kubectlOK is a readiness check: kubectl args succeeds within 15 s.
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
	for _, c := range p.running() {
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
