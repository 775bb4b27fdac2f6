package local

// The files Up writes for the cluster's components: containerd's and the
// kubelet's configuration, the CNI network, kubeconfigs and the
// RuntimeClasses.

import (
	"fmt"
	"path/filepath"

	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/conformance/fakevm"
	"github.com/podvm/podvm/internal/hostbed"
)

// containerdConfig is a private containerd (version 4 config) serving CRI
// on our socket with six handlers: runc (the default, and the
// reference), test-handler (runc again, the handler upstream
// [Feature:RuntimeHandler] e2e specs expect to exist), podvm,
// podvm-template (factory.mode = "template", docs/factory.md),
// podvm-cache (factory.mode = "cache") and runc-fakevm (the fake-VM
// baseline).
func containerdConfig(l layout, o Options) string {
	handlers := []hostbed.Handler{
		hostbed.RuncHandler("runc", o.Runc, ""),
		hostbed.RuncHandler("test-handler", o.Runc, ""),
	}
	if !o.WithoutPodvmHandler {
		handlers = append(handlers, hostbed.PodvmHandler("podvm", o.shim(), o.podvmConfig()),
			hostbed.PodvmHandler(TemplateClass, o.shim(), o.podvmTemplateConfig()),
			hostbed.PodvmHandler(CacheClass, o.shim(), o.podvmCacheConfig()), fakevm.Handler(o.FakeVMRunc))
	}
	return hostbed.ContainerdConfig{
		Header: "Written by podvm cluster up; removed by podvm cluster down.",
		// Drop-in files, as containerd 2.x's default configuration has
		// them (podvm deploy adds its handler there).
		Imports: []string{filepath.Join(l.containerdDropInDir(), "*.toml")},
		Dir:     l.containerdDir(),
		Address: l.containerdSocket(),
		CRI: &hostbed.CRIConfig{
			SandboxImage: hostbed.SandboxImage, RegistryConfigPath: l.certsDir(),
			CNIBinDir: o.CNIBinDir, CNIConfDir: l.cniConfDir(), Handlers: handlers,
		},
	}.Render()
}

// cniConfig is the pod network: Debian's bridge, host-local and portmap
// plugins on a bridge Up creates, whose address is the node's. Pods reach
// each other and the node; there is no masquerading, so nothing they send
// leaves the host.
func cniConfig(l layout, s state) hostbed.CNIConfig {
	return hostbed.CNIConfig{Name: "podvm-cluster", Bridge: s.Bridge, Subnet: s.PodCIDR, Gateway: s.NodeIP,
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

// runtimeClasses are the classes the specs run against: runc, podvm (and
// podvm-template, its pod VMs cloned from a template, and podvm-cache,
// its pod VMs booted ahead) and the fake VM. podvm's overhead.podFixed is what the pod costs the node
// beyond its containers' requests: see docs/conformance.md for the
// derivation.
func runtimeClasses(o Options) []cluster.RuntimeClass {
	classes := []cluster.RuntimeClass{{Name: "runc", Handler: "runc"}}
	if o.WithoutPodvmHandler {
		return classes
	}
	return append(classes,
		cluster.RuntimeClass{Name: "podvm", Handler: "podvm", OverheadMemory: o.OverheadMemory, OverheadCPU: o.OverheadCPU},
		cluster.RuntimeClass{Name: TemplateClass, Handler: TemplateClass, OverheadMemory: o.OverheadMemory, OverheadCPU: o.OverheadCPU},
		cluster.RuntimeClass{Name: CacheClass, Handler: CacheClass, OverheadMemory: o.OverheadMemory, OverheadCPU: o.OverheadCPU},
		fakevm.RuntimeClass())
}

// runtimeClassesManifest declares runtimeClasses.
func runtimeClassesManifest(o Options) string {
	return cluster.RuntimeClassesManifest("Written by podvm cluster up.", runtimeClasses(o)...)
}
