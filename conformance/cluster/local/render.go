package local

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/podvm/podvm/ci/testbed"
)

// layout names every file and directory of a local cluster under its state
// directory, so that Up, Down and Status agree on them.
type layout struct{ dir string }

func (l layout) pki(name string) string      { return filepath.Join(l.dir, "pki", name) }
func (l layout) log(component string) string { return filepath.Join(l.dir, "logs", component+".log") }
func (l layout) pidFile(component string) string {
	return filepath.Join(l.dir, "run", component+".pid")
}
func (l layout) kubeconfig(user string) string {
	if user == "admin" {
		return filepath.Join(l.dir, "kubeconfig")
	}
	return filepath.Join(l.dir, "kubeconfigs", user+".kubeconfig")
}
func (l layout) etcdData() string         { return filepath.Join(l.dir, "etcd") }
func (l layout) containerdDir() string    { return filepath.Join(l.dir, "containerd") }
func (l layout) containerdConfig() string { return filepath.Join(l.dir, "containerd", "config.toml") }
func (l layout) containerdSocket() string {
	return filepath.Join(l.dir, "containerd", "containerd.sock")
}
func (l layout) certsDir() string            { return filepath.Join(l.dir, "containerd", "certs.d") }
func (l layout) cniConfDir() string          { return filepath.Join(l.dir, "cni", "net.d") }
func (l layout) ipamDir() string             { return filepath.Join(l.dir, "cni", "ipam") }
func (l layout) kubeletRoot() string         { return filepath.Join(l.dir, "kubelet") }
func (l layout) kubeletConfig() string       { return filepath.Join(l.dir, "kubelet-config.yaml") }
func (l layout) podLogs() string             { return filepath.Join(l.dir, "pod-logs") }
func (l layout) runtimeClasses() string      { return filepath.Join(l.dir, "runtimeclasses.yaml") }
func (l layout) stateFile() string           { return filepath.Join(l.dir, "cluster.json") }
func (l layout) registryAddrFile() string    { return filepath.Join(l.dir, "run", "registry.addr") }
func (l layout) emptyResolvConf() string     { return filepath.Join(l.dir, "resolv.conf") }
func (l layout) criEndpoint() string         { return "unix://" + l.containerdSocket() }
func (l layout) apiServerURL(s state) string { return fmt.Sprintf("https://%s", s.apiServerAddr()) }

// state is what Up decided and Down must undo; it is written to
// cluster.json as soon as it is known, so a Down after a failed Up finds it.
type state struct {
	NodeName string       `json:"nodeName"`
	NodeIP   netip.Addr   `json:"nodeIP"`
	PodCIDR  netip.Prefix `json:"podCIDR"`
	Bridge   string       `json:"bridge"`
	// ServiceCIDR is virtual (there is no kube-proxy): it only has to miss
	// every real network of the host.
	ServiceCIDR   netip.Prefix `json:"serviceCIDR"`
	APIServerPort int          `json:"apiServerPort"`
	EtcdPort      int          `json:"etcdPort"`
	KubeletPort   int          `json:"kubeletPort"`
	// HostsLine is the line Up added to /etc/hosts, removed by Down.
	HostsLine string `json:"hostsLine,omitempty"`
	// ChainsBefore are the iptables chains that existed before Up: the
	// ones the cluster adds (CNI portmap, kubelet canaries) are removed by
	// Down, and only those.
	ChainsBefore map[string]bool `json:"chainsBefore"`
	// CgroupsBefore tells, per cgroup hierarchy, whether kubepods existed.
	CgroupsBefore map[string]bool `json:"cgroupsBefore"`
	// ConfigLink is set when Up linked /etc/containerd/config.toml (absent
	// before) to our containerd's config; CreatedEtcDir when it also made
	// /etc/containerd.
	ConfigLink bool `json:"configLink,omitempty"`
	// CgroupRoots are the kubelet cgroupRoot directories Up created.
	CgroupRoots   []string `json:"cgroupRoots,omitempty"`
	CreatedEtcDir bool     `json:"createdEtcDir,omitempty"`
}

func (s state) apiServerAddr() string {
	return netip.AddrPortFrom(s.NodeIP, uint16(s.APIServerPort)).String()
}

// serviceIP is the first address of the service range: the apiserver's
// own service, which its certificate must name.
func (s state) serviceIP() netip.Addr { return s.ServiceCIDR.Addr().Next() }

// containerdConfig is a private containerd (version 4 config) serving CRI
// on our socket with three handlers: runc (the default, and the
// reference), podvm, and test-handler (runc again, the handler upstream
// [Feature:RuntimeHandler] e2e specs expect to exist).
func containerdConfig(l layout, o Options) string {
	handlers := []testbed.Handler{
		testbed.RuncHandler("runc", o.Runc, ""),
		testbed.RuncHandler("test-handler", o.Runc, ""),
	}
	if !o.WithoutPodvmHandler {
		handlers = append(handlers, testbed.PodvmHandler("podvm", o.shim(), o.podvmConfig()))
	}
	return testbed.ContainerdConfig{
		Header: "Written by podvm cluster up; removed by podvm cluster down.",
		// Drop-in files, as containerd 2.x's default configuration has
		// them (podvm deploy adds its handler there).
		Imports: []string{filepath.Join(l.containerdDropInDir(), "*.toml")},
		Dir:     l.containerdDir(),
		Address: l.containerdSocket(),
		CRI: &testbed.CRIConfig{
			SandboxImage: SandboxImage, RegistryConfigPath: l.certsDir(),
			CNIBinDir: o.CNIBinDir, CNIConfDir: l.cniConfDir(), Handlers: handlers,
		},
	}.Render()
}

// cniConfig is the pod network: Debian's bridge, host-local and portmap
// plugins on a bridge Up creates, whose address is the node's. Pods reach
// each other and the node; there is no masquerading, so nothing they send
// leaves the host.
func cniConfig(l layout, s state) testbed.CNIConfig {
	return testbed.CNIConfig{Name: "podvm-cluster", Bridge: s.Bridge, Subnet: s.PodCIDR, Gateway: s.NodeIP,
		IPAMDir: l.ipamDir(), Portmap: true}
}

// kubeletConfig is the KubeletConfiguration for this machine: cgroupfs on a
// cgroup v1 host without systemd, swap tolerated, no cluster DNS (pods
// must never reach the host's resolver), and eviction thresholds low
// enough that a nearly full disk does not evict the specs' pods.
func kubeletConfig(l layout, s state, o Options) string {
	return fmt.Sprintf(`# Written by podvm cluster up.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[3]s
authorization:
  mode: Webhook
tlsCertFile: %[4]s
tlsPrivateKeyFile: %[5]s
containerRuntimeEndpoint: %[6]s
cgroupDriver: cgroupfs
cgroupRoot: %[10]s
failCgroupV1: false
failSwapOn: false
resolvConf: %[7]q
podLogsDir: %[8]s
podPidsLimit: %[9]d
maxPods: 110
serializeImagePulls: false
registerNode: true
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
runtimeRequestTimeout: 4m
shutdownGracePeriod: 0s
`, s.NodeIP, s.KubeletPort, l.pki("ca.crt"), l.pki("kubelet-server.crt"), l.pki("kubelet-server.key"),
		l.criEndpoint(), l.emptyResolvConf(), l.podLogs(), o.PodPidsLimit, o.CgroupRoot)
}

// kubeconfigFor is a kubeconfig that authenticates with a client
// certificate from the pki dir.
func kubeconfigFor(l layout, s state, user, certName string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: podvm-local
  cluster:
    server: %[1]s
    certificate-authority: %[2]s
users:
- name: %[3]s
  user:
    client-certificate: %[4]s
    client-key: %[5]s
contexts:
- name: %[3]s@podvm-local
  context:
    cluster: podvm-local
    user: %[3]s
current-context: %[3]s@podvm-local
`, l.apiServerURL(s), l.pki("ca.crt"), user, l.pki(certName+".crt"), l.pki(certName+".key"))
}

// runtimeClassesManifest declares the classes the specs run against.
// podvm's overhead.podFixed is what the pod costs the node beyond its
// containers' requests: see docs/conformance.md for the derivation.
func runtimeClassesManifest(o Options) string {
	var b strings.Builder
	b.WriteString(`# Written by podvm cluster up.
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runc
handler: runc
`)
	if o.WithoutPodvmHandler {
		return b.String()
	}
	fmt.Fprintf(&b, `---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: podvm
handler: podvm
overhead:
  podFixed:
    memory: %s
    cpu: %s
`, o.OverheadMemory, o.OverheadCPU)
	return b.String()
}
