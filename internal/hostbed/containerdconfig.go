package hostbed

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/podvm/podvm/runtime/config"
)

// ContainerdConfig is the configuration (version 4) of a private
// containerd: its own root, state, sockets and plugin directory under Dir,
// and, with CRI set, the CRI plugin with its runtime handlers and pod
// network.
type ContainerdConfig struct {
	// Header is a comment written first, one "# " line per line of it.
	Header string
	// Imports are drop-in files (globs) containerd reads after this one.
	Imports []string
	// Dir holds root, state, debug.sock and opt.
	Dir string
	// Address is the gRPC socket; the ttrpc one is Address+".ttrpc".
	// Short: a unix socket's path has at most 107 bytes.
	Address string
	// DisabledPlugins are the ids of plugins turned off.
	DisabledPlugins []string
	// CRI, when set, configures the CRI plugin.
	CRI *CRIConfig
	// Extra is appended as it is.
	Extra string
}

// CRIConfig is the CRI part of a containerd configuration.
type CRIConfig struct {
	// SandboxImage is the pinned pause image.
	SandboxImage string
	// RegistryConfigPath is a certs.d directory (registry config_path):
	// where every image pull goes.
	RegistryConfigPath string
	// CNIBinDir and CNIConfDir are the pod network's plugins and
	// configuration (see BridgeNetwork).
	CNIBinDir, CNIConfDir string
	// Handlers are the runtime handlers, in this order; the first is the
	// default.
	Handlers []Handler
}

// Handler is one CRI runtime handler: runc (Runc set) or podvm (Shim set).
type Handler struct {
	Name string
	// Runc is the runc binary of a runc handler (containerd's runc shim);
	// RuncRoot, when set, is where runc keeps container state instead of
	// the host-wide /run/containerd/runc.
	Runc, RuncRoot string
	// Shim is containerd-shim-podvm-v2 of a podvm handler, PodvmConfig the
	// podvm configuration it is given ("" for its install's own).
	Shim, PodvmConfig string
}

// RuncHandler is a handler name for runc; root may be "".
func RuncHandler(name, runc, root string) Handler {
	return Handler{Name: name, Runc: runc, RuncRoot: root}
}

// PodvmHandler is a handler name for the podvm shim with podvm
// configuration cfg. It is rendered by config.Handler, which leaves out
// the options table for the shim's install's own config ("" or
// InstallConfig): see config.Handler for why.
func PodvmHandler(name, shim, cfg string) Handler {
	return Handler{Name: name, Shim: shim, PodvmConfig: cfg}
}

// NoCRIPlugins are the plugins a containerd without CRI turns off: `ctr`
// needs none of them, and NRI would open a host-wide socket.
var NoCRIPlugins = []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"}

// NoNRI turns off NRI only, which would open a host-wide socket.
var NoNRI = []string{"io.containerd.nri.v1.nri"}

// Render is the configuration file's text.
func (c ContainerdConfig) Render() string {
	var b strings.Builder
	if c.Header != "" {
		for line := range strings.SplitSeq(strings.TrimRight(c.Header, "\n"), "\n") {
			b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
		}
	}
	b.WriteString("version = 4\n")
	if len(c.Imports) > 0 {
		fmt.Fprintf(&b, "imports = [%s]\n", quoteList(c.Imports))
	}
	fmt.Fprintf(&b, "root = %q\nstate = %q\n", filepath.Join(c.Dir, "root"), filepath.Join(c.Dir, "state"))
	if len(c.DisabledPlugins) > 0 {
		fmt.Fprintf(&b, "disabled_plugins = [%s]\n", quoteList(c.DisabledPlugins))
	}
	fmt.Fprintf(&b, `
[plugins."io.containerd.server.v1.grpc"]
  address = %q
[plugins."io.containerd.server.v1.ttrpc"]
  address = %q
[plugins."io.containerd.server.v1.debug"]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, c.Address, c.Address+".ttrpc", filepath.Join(c.Dir, "debug.sock"), filepath.Join(c.Dir, "opt"))
	if c.CRI != nil {
		c.CRI.render(&b)
	}
	b.WriteString(c.Extra)
	return b.String()
}

func (c *CRIConfig) render(b *strings.Builder) {
	rt := fmt.Sprintf("plugins.%q", config.CRIRuntimePlugin)
	def := ""
	if len(c.Handlers) > 0 {
		def = c.Handlers[0].Name
	}
	fmt.Fprintf(b, `
[plugins."io.containerd.grpc.v1.cri"]
  # Loopback and a free port: never 10010, which a host containerd may hold.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[2]q
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %[3]q

[%[1]s]
  # CAP_SYS_RESOURCE may be missing from the bounding set (it is on the
  # machines podvm is developed on): without this runc fails with "can't
  # get final child's PID from pipe".
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not the host's /var/run/netns.
  netns_mounts_under_state_dir = true
  [%[1]s.cni]
    bin_dirs = [%[4]q]
    conf_dir = %[5]q
  [%[1]s.containerd]
    default_runtime_name = %[6]q
`, rt, c.SandboxImage, c.RegistryConfigPath, c.CNIBinDir, c.CNIConfDir, def)
	for _, h := range c.Handlers {
		h.render(b, rt+".containerd.runtimes."+h.Name)
	}
}

func (h Handler) render(b *strings.Builder, table string) {
	if h.Shim != "" {
		podvm := config.Handler{Name: h.Name, Shim: h.Shim, ConfigPath: h.PodvmConfig, Plugin: config.CRIRuntimePlugin}
		for line := range strings.SplitSeq(strings.TrimSuffix(podvm.TOML(), "\n"), "\n") {
			b.WriteString("    " + line + "\n")
		}
		return
	}
	fmt.Fprintf(b, `    [%[1]s]
      runtime_type = "io.containerd.runc.v2"
      [%[1]s.options]
        BinaryName = %[2]q
`, table, h.Runc)
	if h.RuncRoot != "" {
		fmt.Fprintf(b, "        Root = %q\n", h.RuncRoot)
	}
	b.WriteString("        SystemdCgroup = false\n")
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
