package hostbed

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// StackOptions say what StartStack starts. Only Dir and the containerd
// binaries are required: without Images there is no registry, without
// Network no pod network, without Handlers no CRI.
type StackOptions struct {
	// Dir is the stack's work directory, made by the caller and short (a
	// unix socket's path has at most 107 bytes): containerd's root, state,
	// socket (c.sock), config.toml and containerd.log; the CNI
	// configuration (cni/), the registry's certs.d and registry.log.
	Dir string
	// Images are served by a registry on 127.0.0.1 where every pull goes.
	Images []Image
	// Network is the pod network; its Dir defaults to Dir/cni.
	Network *BridgeOptions
	// Containerd is the containerd binary (containerd-shim-runc-v2 beside
	// it), ShimDir holds containerd-shim-podvm-v2, LogLevel is
	// containerd's --log-level.
	Containerd, ShimDir, LogLevel string
	// Handlers turn CRI on with these runtime handlers, the first the
	// default; Network is then required. SandboxImage defaults to
	// SandboxImage.
	Handlers     []Handler
	SandboxImage string
	// Extra is appended to containerd's configuration.
	Extra string
}

// Stack is a registry, a pod network and a private containerd started
// together. Stop stops what was started, in reverse.
type Stack struct {
	Dir string
	// Address is containerd's socket; ConfigPath its configuration.
	Address, ConfigPath string
	// Registry and CertsDir (the certs.d that sends pulls to it) are set
	// with Images; Network with Network.
	Registry   *Registry
	CertsDir   string
	Network    *BridgeNetwork
	Containerd *Containerd

	registryLog io.Closer
}

// StartStack starts the registry, the pod network and containerd, in this
// order. On error whatever was started is stopped again.
func StartStack(o StackOptions) (_ *Stack, err error) {
	s := &Stack{Dir: o.Dir, Address: filepath.Join(o.Dir, "c.sock"), ConfigPath: filepath.Join(o.Dir, "config.toml")}
	defer func() {
		if err != nil {
			if serr := s.Stop(0); serr != nil {
				err = fmt.Errorf("%w; stopping what started: %v", err, serr)
			}
		}
	}()
	if len(o.Images) > 0 {
		if err := s.startRegistry(o.Images); err != nil {
			return nil, err
		}
	}
	if o.Network != nil {
		no := *o.Network
		if no.Dir == "" {
			no.Dir = filepath.Join(o.Dir, "cni")
		}
		if s.Network, err = StartBridgeNetwork(no); err != nil {
			return nil, err
		}
	}
	cfg, err := o.Config(s.CertsDir, s.Network)
	if err != nil {
		return nil, err
	}
	if cfg.CRI != nil {
		// Pods with a user namespace run as an unprivileged host uid that
		// must traverse to their rootfs under state/ (as under
		// /run/containerd, which is 0711); MkdirTemp makes a directory 0700.
		if err := os.Chmod(o.Dir, 0o711); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(s.ConfigPath, []byte(cfg.Render()), 0o600); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	c := &Containerd{Binary: o.Containerd, ShimDir: o.ShimDir, Config: s.ConfigPath, Address: s.Address,
		LogPath: filepath.Join(o.Dir, "containerd.log"), LogLevel: o.LogLevel}
	if err := c.Start(); err != nil {
		return nil, err
	}
	s.Containerd = c
	return s, nil
}

// startRegistry serves images and writes the certs.d that sends every
// pull to them.
func (s *Stack) startRegistry(images []Image) error {
	logf, err := os.Create(filepath.Join(s.Dir, "registry.log"))
	if err != nil {
		return fmt.Errorf("registry log: %w", err)
	}
	s.CertsDir = filepath.Join(s.Dir, "certs.d")
	reg, err := ServeImages(images, logf, s.CertsDir)
	if err != nil {
		logf.Close()
		return err
	}
	s.Registry, s.registryLog = reg, logf
	return nil
}

// Config is containerd's configuration in a stack of o whose registry's
// certs.d is certsDir and whose pod network is n: CRI with o.Handlers, or
// no CRI at all.
func (o StackOptions) Config(certsDir string, n *BridgeNetwork) (ContainerdConfig, error) {
	cfg := ContainerdConfig{Dir: o.Dir, Address: filepath.Join(o.Dir, "c.sock"), DisabledPlugins: NoCRIPlugins, Extra: o.Extra}
	if len(o.Handlers) == 0 {
		return cfg, nil
	}
	if n == nil {
		return cfg, errors.New("a CRI containerd needs a pod network")
	}
	sandbox := o.SandboxImage
	if sandbox == "" {
		sandbox = SandboxImage
	}
	cfg.DisabledPlugins = NoNRI
	cfg.CRI = &CRIConfig{SandboxImage: sandbox, RegistryConfigPath: certsDir,
		CNIBinDir: n.BinDir, CNIConfDir: n.ConfDir, Handlers: o.Handlers}
	return cfg, nil
}

// Stop stops containerd (SIGTERM, then SIGKILL after grace; shims outlive
// it by design), unmounts what is left under Dir (snapshots are overlay
// mounts under containerd's root), deletes the pod network and stops the
// registry. Dir itself is left to the caller. Stop may be called again.
func (s *Stack) Stop(grace time.Duration) error {
	var errs []error
	if s.Containerd != nil {
		s.Containerd.Stop(grace)
	}
	if _, failed := UnmountAll(s.Dir); len(failed) > 0 {
		errs = append(errs, fmt.Errorf("unmount under %s: %v", s.Dir, failed))
	}
	if s.Network != nil {
		if err := s.Network.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("pod network %s: %w", s.Network.Name, err))
		}
		s.Network = nil
	}
	if s.Registry != nil {
		if err := s.Registry.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop the test registry: %w", err))
		}
		s.registryLog.Close()
		s.Registry = nil
	}
	return errors.Join(errs...)
}

// HostLeaks lists what pods of this stack left on the host besides podvm's
// own leaks (LeaksIn): mounts (container rootfs, pod network namespaces)
// under Dir, podvm's taps in the host namespace, and whatever the pod
// network holds.
func (s *Stack) HostLeaks() []string {
	var out []string
	for _, mp := range MountsUnder(s.Dir) {
		out = append(out, "mount under containerd's dirs: "+mp)
	}
	for _, tap := range HostTaps() {
		out = append(out, "podvm tap in the host namespace: "+tap)
	}
	if s.Network != nil {
		out = append(out, s.Network.Leaks()...)
	}
	return out
}

// ShimSocketLeaks names the shim sockets of groups (a pod's sandbox id, a
// lone container's id) in containerd namespace ns that still exist: the
// socket containerd-shim-podvm-v2 listens on, which it removes when it
// ends and containerd's `shim delete` removes after it died.
func (s *Stack) ShimSocketLeaks(ns string, groups ...string) []string {
	var out []string
	for _, g := range groups {
		sum := sha256.Sum256([]byte(filepath.Join(s.Address, ns, g)))
		for _, root := range []string{"/run/containerd/s", filepath.Join(s.Dir, "state", "s")} {
			p := filepath.Join(root, fmt.Sprintf("%x", sum))
			if _, err := os.Stat(p); err == nil {
				out = append(out, fmt.Sprintf("shim socket of %s: %s", g, p))
			}
		}
	}
	return out
}
