package container

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/cgroup"
	"github.com/podvm/podvm/agent/pause"
)

// validID says whether id is what runc accepts as a container ID, with a
// length cap that keeps paths derived from it well inside PATH_MAX and
// sun_path limits: 1-128 of [A-Za-z0-9_.+-], not starting with a symbol.
// Written out rather than as a regexp: compiling `{0,127}` at package init
// cost 7 ms of every guest boot under TCG.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkID(id string) error {
	if !validID(id) {
		return fmt.Errorf("container id %q: want 1-128 of [A-Za-z0-9_.+-], not starting with a symbol: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// bundleOptions are what writeBundle decides besides the spec.
type bundleOptions struct {
	terminal    bool   // the process gets a pty (process.terminal)
	ownsNetwork bool   // Config.OwnsNetwork
	specVersion string // replaces ociVersion when set (ociRuntime.specVersion)
	// personality sets the default personality where the spec has none
	// (ociRuntime.personality, layout.go).
	personality bool
	// cpu, when set, raises a CPU limit too small for the runtime's setup.
	cpu *cpuFloor
}

// writeBundle makes the container's bundle directory with the spec as its
// config.json, adjusted for the guest. The shim already rewrote the spec for
// the guest; the agent only fills in what must be decided here.
func writeBundle(dir, id string, raw []byte, o bundleOptions) (*specs.Spec, error) {
	spec, err := guestSpec(id, raw, o.terminal)
	if err != nil {
		return nil, err
	}
	if err := writeSpec(dir, id, spec, o); err != nil {
		return nil, err
	}
	return spec, nil
}

// writeSpec is writeBundle for a spec guestSpec decoded.
func writeSpec(dir, id string, spec *specs.Spec, o bundleOptions) error {
	if o.specVersion != "" {
		spec.Version = o.specVersion
	}
	if o.personality {
		withPersonality(spec)
	}
	if o.cpu != nil {
		o.cpu.raiseInSpec(spec, cgroup.Unified())
	}
	if o.ownsNetwork && !hasNamespace(spec, specs.NetworkNamespace) {
		if err := applyNetSysctls(id, spec, "/proc/sys"); err != nil {
			return err
		}
	}
	if err := checkRoot(dir, id, spec.Root.Path); err != nil {
		return err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode spec of container %s: %w", id, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create bundle of container %s: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return fmt.Errorf("write spec of container %s: %w", id, err)
	}
	return nil
}

// guestSpec decodes the spec and sets what the agent owns:
//   - the cgroup path: runc drives the guest's cgroup v2 with its cgroupfs
//     manager (there is no systemd in the guest), so an empty or
//     systemd-style "slice:prefix:name" path becomes /podvm/<id>;
//   - process.terminal, from the request, so runc and the agent agree on
//     whether a console socket is needed.
func guestSpec(id string, raw []byte, terminal bool) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("decode spec of container %s: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("spec of container %s has no process: %w", id, errdefs.ErrInvalidArgument)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, fmt.Errorf("spec of container %s has no root.path: %w", id, errdefs.ErrInvalidArgument)
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	if p := spec.Linux.CgroupsPath; p == "" || isSystemdPath(p) {
		spec.Linux.CgroupsPath = path.Join("/podvm", id)
	}
	spec.Process.Terminal = terminal
	return &spec, nil
}

// isSystemdPath reports whether p is a systemd cgroup path, which runc's
// cgroupfs driver would misread as a directory name.
func isSystemdPath(p string) bool {
	return !strings.HasPrefix(p, "/") && strings.Count(p, ":") == 2
}

// checkRoot fails clearly when the container's root filesystem is missing,
// typically because the shared filesystem is not mounted or the shim put
// the rootfs somewhere else; runc's own error would name neither.
func checkRoot(bundle, id, root string) error {
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root) // as runc resolves it
	}
	fi, err := os.Stat(root)
	if os.IsNotExist(err) {
		return fmt.Errorf("root filesystem %s of container %s does not exist (is the shared filesystem mounted?): %w", root, id, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return fmt.Errorf("root filesystem of container %s: %w", id, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("root filesystem %s of container %s is not a directory: %w", root, id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// applyNetSysctls writes the spec's net.* sysctls under procSys and removes
// them from the spec. A pod's containers share the guest's own network
// namespace (the VM is the pod's network boundary), so the pod's network
// sysctls belong to it; runc would refuse them there ("not allowed in host
// network namespace"), as it should on a real host.
func applyNetSysctls(id string, spec *specs.Spec, procSys string) error {
	net := make(map[string]string)
	for key, value := range spec.Linux.Sysctl {
		if strings.HasPrefix(key, "net.") {
			net[key] = value
		}
	}
	if err := pause.WriteSysctls(procSys, net); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	for key := range net {
		delete(spec.Linux.Sysctl, key)
	}
	return nil
}
