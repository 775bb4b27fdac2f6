// Package node is podvm's node installer: the program the installer
// DaemonSet runs on every node (`podvm deploy node install|uninstall`).
//
// Install puts the shim, the agent, the guest image and a configuration
// under a prefix on the node, checks the node with `podvm check`, adds the
// `podvm` runtime handler to containerd through a drop-in file (the
// operator's own containerd configuration is never rewritten), restarts
// containerd the way the node runs it, waits until containerd serves the
// handler, and labels the node so that the RuntimeClass's node selector
// lets podvm pods onto it. Uninstall undoes each step in reverse order.
//
// Every step is idempotent: running Install (or Uninstall) twice changes
// nothing the second time, and a run cut short is finished by the next.
// The node is reached through HostRoot, the node's / mounted into the
// installer's container; commands that must run on the node (podvm check,
// systemctl, a restart command) run chrooted into it.
package node

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Options say where things are on the node and in the image. Paths named
// "host" are as the node sees them; the installer reaches them through
// HostRoot.
type Options struct {
	// HostRoot is where the node's / is mounted in the installer's
	// container ("/host"); "/" when running on the node itself.
	HostRoot string
	// Payload is the directory in the image holding bin/ and share/podvm/.
	Payload string
	// Prefix is the host directory podvm is installed into (/opt/podvm).
	Prefix string
	// ContainerdConfig is the host path of containerd's main configuration.
	ContainerdConfig string
	// DropInDir is the host directory containerd's configuration imports
	// drop-in files from (containerd 2.x default: /etc/containerd/conf.d).
	DropInDir string
	// ContainerdSocket is the host path of containerd's CRI socket.
	ContainerdSocket string
	// RestartCommand restarts containerd, run chrooted into the node's /.
	// Empty means systemd: `systemctl restart <ContainerdUnit>`.
	RestartCommand []string
	// ContainerdUnit is containerd's systemd unit.
	ContainerdUnit string
	// FactoryCommand starts, restarts and stops a host service on a node
	// without systemd, run chrooted into the node's / with "start",
	// "restart" (each followed by "--" and the service's command line) or
	// "stop" appended: how the VM cache's daemon runs there when the
	// node's configuration has factory.mode = "cache". Empty means
	// systemd: a unit in SystemdUnitDir.
	FactoryCommand []string
	// SystemdUnitDir is the host directory of the operator's systemd units.
	SystemdUnitDir string
	// Handler is the CRI runtime handler to add ("podvm").
	Handler string
	// NodeName is this node's name in the Kubernetes API.
	NodeName string
	// LabelKey and LabelValue mark a node ready for podvm pods.
	LabelKey, LabelValue string
	// CRITimeout bounds the wait for containerd to serve (or stop
	// serving) the handler after a restart.
	CRITimeout time.Duration
}

// Defaults are the paths of a node that runs containerd under systemd
// with its stock layout.
func Defaults() Options {
	return Options{
		HostRoot:         "/host",
		Payload:          "/podvm",
		Prefix:           "/opt/podvm",
		ContainerdConfig: "/etc/containerd/config.toml",
		DropInDir:        "/etc/containerd/conf.d",
		ContainerdSocket: "/run/containerd/containerd.sock",
		ContainerdUnit:   "containerd",
		SystemdUnitDir:   "/etc/systemd/system",
		Handler:          "podvm",
		LabelKey:         "podvm.io/runtime",
		LabelValue:       "ready",
		CRITimeout:       2 * time.Minute,
	}
}

// host is the path of a host file as the installer reaches it.
func (o Options) host(path string) string { return filepath.Join(o.HostRoot, path) }

func (o Options) shim() string { return filepath.Join(o.Prefix, "bin", "containerd-shim-podvm-v2") }
func (o Options) podvmConfig() string {
	return filepath.Join(o.Prefix, "share", "podvm", "config.toml")
}
func (o Options) dropIn() string { return filepath.Join(o.DropInDir, o.Handler+".toml") }

// Runner runs a command chrooted into root (no chroot when root is "/")
// and returns its combined output. Tests record the commands instead.
type Runner func(ctx context.Context, root string, argv []string, env []string) ([]byte, error)

// Labeler sets and removes a node's label through the Kubernetes API.
type Labeler interface {
	// Label sets key=value on node; an empty value removes key.
	Label(ctx context.Context, node, key, value string) error
}

// CRI tells which runtime handlers containerd serves.
type CRI func(ctx context.Context, socket string) ([]string, error)

// Installer installs podvm on the node it runs on.
type Installer struct {
	o       Options
	run     Runner
	labeler Labeler
	cri     CRI
	log     io.Writer
	// installed is a digest of the files installFiles put under Prefix.
	installed string
	// poll is how often the CRI is asked while waiting.
	poll time.Duration
}

// New returns an installer; run, labeler and cri talk to the outside world.
func New(o Options, run Runner, labeler Labeler, cri CRI, log io.Writer) *Installer {
	return &Installer{o: o, run: run, labeler: labeler, cri: cri, log: log, poll: time.Second}
}

func (in *Installer) step(format string, a ...any) {
	fmt.Fprintf(in.log, "%s ==> %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func (in *Installer) info(format string, a ...any) {
	fmt.Fprintf(in.log, "%s     %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// Install runs every step of the installation in order; each is a no-op
// when already done.
func (in *Installer) Install(ctx context.Context) error {
	o := in.o
	if err := o.validate(); err != nil {
		return err
	}
	in.step("installing podvm on node %s under %s", o.NodeName, o.Prefix)
	in.step("files: shim, agent, guest image and configuration into %s", o.Prefix)
	if err := in.installFiles(); err != nil {
		return err
	}
	in.step("podvm check on the node")
	if err := in.check(ctx); err != nil {
		return err
	}
	in.step("containerd drop-in %s (handler %q)", o.dropIn(), o.Handler)
	changed, err := in.writeDropIn()
	if err != nil {
		return err
	}
	if err := in.converge(ctx, changed, true); err != nil {
		return err
	}
	in.step("VM cache daemon (%s): runs while the node's configuration has factory.mode = \"cache\"", FactoryService)
	if err := in.convergeFactory(ctx, true); err != nil {
		return err
	}
	in.step("label node %s %s=%s", o.NodeName, o.LabelKey, o.LabelValue)
	if err := in.labeler.Label(ctx, o.NodeName, o.LabelKey, o.LabelValue); err != nil {
		return err
	}
	in.step("podvm is installed on node %s: pods with runtimeClassName %s can run here", o.NodeName, o.Handler)
	return nil
}

// Uninstall undoes Install in reverse order. It refuses while podvm pods
// still run on the node: their VMs would lose their shim's binary and
// configuration.
func (in *Installer) Uninstall(ctx context.Context) error {
	o := in.o
	if err := o.validate(); err != nil {
		return err
	}
	in.step("removing podvm from node %s (%s)", o.NodeName, o.Prefix)
	if shims := runningShims(o.host("/proc"), o.shim()); len(shims) > 0 {
		return fmt.Errorf("%d podvm pod VM(s) still run on node %s (shim pids %s): delete the pods with runtimeClassName %s first "+
			"(kubectl get pods -A --field-selector spec.nodeName=%s), then run the uninstall again",
			len(shims), o.NodeName, strings.Join(shims, ", "), o.Handler, o.NodeName)
	}
	in.step("remove label %s from node %s", o.LabelKey, o.NodeName)
	if err := in.labeler.Label(ctx, o.NodeName, o.LabelKey, ""); err != nil {
		return err
	}
	in.step("remove containerd drop-in %s", o.dropIn())
	changed, err := in.removeDropIn()
	if err != nil {
		return err
	}
	if err := in.converge(ctx, changed, false); err != nil {
		return err
	}
	in.step("stop the VM cache daemon (%s) if it runs", FactoryService)
	if err := in.convergeFactory(ctx, false); err != nil {
		return err
	}
	in.step("stop VM template holders and remove their templates, end the VM cache")
	if err := in.cleanFactory(ctx); err != nil {
		return err
	}
	in.step("remove files from %s", o.Prefix)
	if err := in.removeFiles(); err != nil {
		return err
	}
	in.step("podvm is removed from node %s", o.NodeName)
	return nil
}

func (o Options) validate() error {
	var missing []string
	for name, v := range map[string]string{"host root": o.HostRoot, "prefix": o.Prefix, "payload": o.Payload,
		"containerd config": o.ContainerdConfig, "drop-in directory": o.DropInDir, "containerd socket": o.ContainerdSocket,
		"handler": o.Handler, "node name (NODE_NAME, from the downward API)": o.NodeName, "label key": o.LabelKey} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("node installer: not set: %s", strings.Join(missing, ", "))
	}
	for _, p := range []string{o.Prefix, o.ContainerdConfig, o.DropInDir, o.ContainerdSocket} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("node installer: %q is not an absolute path on the node", p)
		}
	}
	if !dnsLabel.MatchString(o.Handler) {
		return fmt.Errorf("node installer: handler %q is not a DNS label (lower-case letters, digits and '-'), as RuntimeClass handlers must be", o.Handler)
	}
	if o.Prefix == "/" || filepath.Clean(o.Prefix) == "/usr" {
		return fmt.Errorf("node installer: prefix %s would mix podvm's files with the node's own: use a directory of its own such as /opt/podvm", o.Prefix)
	}
	return nil
}

// dnsLabel is what a RuntimeClass handler may be (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
