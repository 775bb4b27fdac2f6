package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// ShippedPrefix is the install prefix the shipped configuration
// (default.toml) names in its guest image paths.
const ShippedPrefix = "/opt/podvm"

// ForPrefix is shipped (a configuration naming ShippedPrefix, such as
// DefaultTOML) with its paths moved from ShippedPrefix to prefix, checked
// by the parser. `podvm install` and the node installer write it.
func ForPrefix(shipped []byte, prefix string) ([]byte, error) {
	prefix = filepath.Clean(prefix)
	text := strings.ReplaceAll(string(shipped), `"`+ShippedPrefix+`/`, `"`+prefix+`/`)
	if _, err := Parse([]byte(text), filepath.Join(prefix, InstalledRel)); err != nil {
		return nil, fmt.Errorf("the configuration for prefix %s is invalid: %w", prefix, err)
	}
	return []byte(text), nil
}

// WithStateDir is cfg (a configuration file's text) with runtime.state_dir
// set to stateDir, checked by the parser, so that a private user of an
// install (a benchmark, a test) keeps its sandboxes apart from everyone
// else's. Comments of cfg are not kept.
func WithStateDir(cfg []byte, stateDir string) ([]byte, error) {
	var m map[string]any
	if err := toml.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("podvm config: %w", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	rt, _ := m["runtime"].(map[string]any)
	if rt == nil {
		rt = map[string]any{}
		m["runtime"] = rt
	}
	rt["state_dir"] = stateDir
	out, err := toml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("podvm config: %w", err)
	}
	c, err := Parse(out, "podvm config with state_dir "+stateDir)
	if err != nil {
		return nil, err
	}
	if c.Runtime.StateDir != stateDir {
		return nil, fmt.Errorf("podvm config: state_dir is %q after rewriting, want %q", c.Runtime.StateDir, stateDir)
	}
	return out, nil
}

// The CRI plugins whose tables hold containerd's runtime handlers.
const (
	// CRIRuntimePlugin is containerd 2.x's (config version 3 and 4).
	CRIRuntimePlugin = "io.containerd.cri.v1.runtime"
	// CRIPluginV2 is containerd 1.7's (config version 2).
	CRIPluginV2 = "io.containerd.grpc.v1.cri"
)

// Handler is a containerd CRI runtime handler that runs podvm's shim.
//
// It has no options table unless ConfigPath names a config other than the
// shim's install's own (InstallConfig), which the shim finds by itself
// (ResolveFor). That is the containerd 2.4 user namespace workaround: for a
// user namespace container containerd adds runc's options (the stdio
// owner, IoUid/IoGid) to the task and fails to merge them with a handler's
// options of another kind ("can't unmarshal type runtimeoptions.v1.Options
// to output containerd.runc.v1.Options", containerd issues 11091 and
// 11480), so a podvm handler with options cannot start user namespace pods.
// The shim reads runc's options, when it gets them, without error.
type Handler struct {
	Name string // handler name, e.g. "podvm"
	Shim string // path of containerd-shim-podvm-v2 (runtime_path)
	// ConfigPath is the podvm config the handler names; "" (or the
	// install's own) gives the handler no options.
	ConfigPath string
	// Plugin is the CRI plugin the handler belongs to; "" is
	// CRIRuntimePlugin.
	Plugin string
}

// Table is the handler's TOML table name.
func (h Handler) Table() string {
	plugin := h.Plugin
	if plugin == "" {
		plugin = CRIRuntimePlugin
	}
	return fmt.Sprintf("plugins.%q.containerd.runtimes.%s", plugin, h.Name)
}

// HasOptions tells whether the handler needs an options table: only for a
// config other than its install's own (see Handler).
func (h Handler) HasOptions() bool {
	return h.ConfigPath != "" && filepath.Clean(h.ConfigPath) != InstallConfig(h.Shim)
}

// TOML renders the handler's table (and its options table, if any), each
// line ending in a newline.
func (h Handler) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n  runtime_type = \"io.containerd.podvm.v2\"\n  runtime_path = %q\n", h.Table(), h.Shim)
	if !h.HasOptions() {
		fmt.Fprintf(&b, "  # No options: the shim reads %s, its install's config,\n  # unless the operator's %s/config.toml exists ('podvm config show' says which).\n", InstallConfig(h.Shim), EtcDir)
		return b.String()
	}
	fmt.Fprintf(&b, "  [%s.options]\n    ConfigPath = %q\n", h.Table(), h.ConfigPath)
	return b.String()
}
