// Package virtiofsd starts and stops the virtio-fs daemon that serves a pod's
// shared directory to its VMM over vhost-user. It is VMM-neutral: QEMU and
// Cloud Hypervisor both connect to the socket it creates. The daemon runs
// under a seccomp filter of the shim's that refuses setuid and setgid modes
// (setid.go), besides its own hardening (RustHardening). QEMU's 9p proxy
// helper, the daemon of a share a jailed QEMU serves by 9p, is started
// and stopped the same way (proxy9p.go), confined so that it cannot abort
// (proxycaps.go).
package virtiofsd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// DefaultPaths are where distributions install virtiofsd: the Rust one
// (Debian trixie, Fedora) first, then the C daemon of QEMU <= 7.2 (Debian
// bookworm), only a fallback: it is unmaintained and cannot drop what the
// Rust one drops (see RustHardening).
var DefaultPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd"}

// InstalledRel is where `podvm install` puts the Rust virtiofsd, relative
// to the install prefix (the directory above the shim's bin/).
const InstalledRel = "libexec/podvm/virtiofsd"

// Config describes one virtiofsd instance.
type Config struct {
	// Name is used in errors, e.g. "virtiofsd for sandbox abc".
	Name string
	// Binary is the daemon; empty means the first of Candidates present.
	Binary string
	// SocketPath is the vhost-user socket the VMM connects to.
	SocketPath string
	// SharedDir is the exported tree.
	SharedDir string
	// Cache is auto (default), always or none.
	Cache string
	// LogPath receives the daemon's output.
	LogPath string
	// ExtraArgs are appended verbatim.
	ExtraArgs []string
	// Cgroup, when set, receives the daemon right after it is spawned (the
	// pod's host cgroup).
	Cgroup childproc.Cgroup
	// AllowSetID runs the daemon without the set-id filter (setid.go), so
	// the guest may make setuid and setgid files on the host, as under
	// runc and Kata. Off by default: the operator's choice
	// (hypervisor.allow_guest_setid).
	AllowSetID bool
}

// Daemon is a running virtiofsd.
type Daemon struct {
	cfg  Config
	proc *childproc.Process
}

// listenFD is the fd number the listening socket gets in the child.
const listenFD = 3

// Start binds the vhost-user socket itself, then launches virtiofsd with that
// socket as --fd. The socket is therefore listening when Start returns, even
// before virtiofsd runs: a VMM started right away connects into the listen
// backlog and virtiofsd accepts it when ready. No waiting, no polling.
// (Probing readiness by connecting is not an option: virtiofsd serves exactly
// one connection and exits when it closes.)
func Start(cfg Config) (*Daemon, error) {
	configured := cfg.Binary != ""
	bin, err := FindBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	cfg.Binary = bin
	if cfg.Name == "" {
		cfg.Name = "virtiofsd"
	}
	flavor, err := DetectFlavor(bin)
	if err != nil {
		return nil, err
	}
	sandbox := chooseSandbox(cfg, flavor, configured)
	args, err := Args(flavor, cfg, sandbox, listenFD)
	if err != nil {
		return nil, err
	}
	lf, err := listenUnix(cfg.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	// The child has its own copy after the fork; ours would keep the socket
	// accepting connections after virtiofsd died.
	defer lf.Close()
	spec := childproc.Spec{
		Name:       cfg.Name,
		Path:       bin,
		Args:       args,
		LogPath:    cfg.LogPath,
		ExtraFiles: []*os.File{lf},
		Cgroup:     cfg.Cgroup,
		Confine:    cfg.confine(),
	}
	proc, err := childproc.Start(spec)
	if err != nil {
		os.Remove(cfg.SocketPath)
		return nil, err
	}
	return &Daemon{cfg: cfg, proc: proc}, nil
}

// Pid is virtiofsd's process id.
func (d *Daemon) Pid() int { return d.proc.Pid() }

// Done is closed when virtiofsd has exited.
func (d *Daemon) Done() <-chan struct{} { return d.proc.Done() }

// Killed reports whether virtiofsd died of a signal rather than exiting.
func (d *Daemon) Killed() bool { return strings.HasPrefix(d.proc.WaitStatus(), "signal:") }

// ExitReason says how and why virtiofsd died, with the tail of its log and
// the caller's notes on what it means.
func (d *Daemon) ExitReason(notes ...string) error { return d.proc.ExitReason(5, notes...) }

// Stop ends virtiofsd (it normally exits by itself once its VMM has gone),
// waits for it and removes its socket. Safe to call more than once.
func (d *Daemon) Stop(ctx context.Context) error {
	d.proc.Terminate(ctx, 2*time.Second)
	if d.cfg.SocketPath == "" { // the 9p proxy helper's: a socket pair
		return nil
	}
	if err := os.Remove(d.cfg.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: remove socket: %w", d.cfg.Name, err)
	}
	return nil
}

// Candidates are the binaries tried when none is configured: the one the
// running program's install ships (<prefix>/libexec/podvm/virtiofsd, for a
// program in <prefix>/bin), then DefaultPaths.
func Candidates() []string {
	var c []string
	if exe, err := os.Executable(); err == nil {
		c = append(c, filepath.Join(filepath.Dir(filepath.Dir(exe)), InstalledRel))
	}
	return append(c, DefaultPaths...)
}

// FindBinary returns path if set (and present), else the first of
// Candidates that exists.
func FindBinary(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("virtiofsd %s: %w (install qemu-system-common or virtiofsd, or set [hypervisor.qemu] virtiofsd_path in the podvm config)", path, err)
		}
		return path, nil
	}
	candidates := Candidates()
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("virtiofsd not found in %s (podvm install ships it; or install virtiofsd, or set [hypervisor.qemu] virtiofsd_path in the podvm config)",
		strings.Join(candidates, ", "))
}

// Version runs `virtiofsd --version` and returns its first line.
func Version(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", bin, err, strings.TrimSpace(string(out)))
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first, nil
}

// flavorCache avoids running --version for every VM: path -> Flavor.
var flavorCache sync.Map

// DetectFlavor tells the C daemon ("virtiofsd version 7.2.x") from the Rust
// one ("virtiofsd 1.x"): their options differ.
func DetectFlavor(bin string) (Flavor, error) {
	if f, ok := flavorCache.Load(filepath.Clean(bin)); ok {
		return f.(Flavor), nil
	}
	v, err := Version(bin)
	if err != nil {
		return 0, err
	}
	f := FlavorRust
	if strings.Contains(v, "virtiofsd version") {
		f = FlavorC
	}
	flavorCache.Store(filepath.Clean(bin), f)
	return f, nil
}
