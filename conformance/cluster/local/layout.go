package local

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
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
func (l layout) containerdDropInDir() string {
	return filepath.Join(l.dir, "containerd", "conf.d")
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
func (l layout) factoryConfig() string       { return filepath.Join(l.dir, "podvm-factory.toml") }
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
	CgroupRoots []string `json:"cgroupRoots,omitempty"`
	// CacheNetNSBefore: the VM cache's holding network namespace existed
	// before Up started its daemon, so Down leaves it.
	CacheNetNSBefore bool `json:"cacheNetNSBefore,omitempty"`
	CreatedEtcDir    bool `json:"createdEtcDir,omitempty"`
}

func (s state) apiServerAddr() string {
	return netip.AddrPortFrom(s.NodeIP, uint16(s.APIServerPort)).String()
}

// serviceIP is the first address of the service range: the apiserver's
// own service, which its certificate must name.
func (s state) serviceIP() netip.Addr { return s.ServiceCIDR.Addr().Next() }

// etcdURL is etcd's client URL, on loopback.
func (s state) etcdURL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.EtcdPort) }

// loadState reads the state Up saved; false when there is none.
func (p *Provider) loadState() (state, bool) {
	var s state
	b, err := os.ReadFile(p.l.stateFile())
	if err != nil {
		return s, false
	}
	return s, json.Unmarshal(b, &s) == nil
}

// saveState writes s to cluster.json, where Down and Status find it.
func (p *Provider) saveState(s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p.l.stateFile(), b, 0o644)
}
