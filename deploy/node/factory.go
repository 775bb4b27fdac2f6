package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The VM cache's daemon as a host service (docs/deploy.md, docs/factory.md
// section 8): when the node's configuration has factory.mode = "cache",
// `podvm factory serve` runs beside containerd for as long as podvm is
// installed, as containerd itself runs: a systemd unit where the node runs
// systemd, else through the node's service command (FactoryCommand). The
// installer keeps no privileged container for it.

// FactoryService is the host service running `podvm factory serve`.
const FactoryService = "podvm-factory"

// appliedRel records, under Prefix, the service definition that was last
// started: the next install restarts the daemon when its definition
// (binary, guest image, configuration) differs, also after a run cut short
// between writing the unit and restarting it.
const appliedRel = "share/podvm/" + FactoryService + ".applied"

func (o Options) unitPath() string { return filepath.Join(o.SystemdUnitDir, FactoryService+".service") }

// factoryArgv is the daemon's command line: the configuration is resolved
// as the shim resolves it (the operator's files included), not named, so
// that the daemon boots exactly the VMs the shims look for.
func (o Options) factoryArgv() []string {
	return []string{filepath.Join(o.Prefix, "bin", "podvm"), "factory", "serve", "--prefix", o.Prefix}
}

// serviceKind is how the node runs services: "systemd" or "command".
func (in *Installer) serviceKind() (string, error) {
	if len(in.o.FactoryCommand) > 0 {
		return "command", nil
	}
	if st, err := os.Stat(in.o.host("/run/systemd/system")); err == nil && st.IsDir() {
		return "systemd", nil
	}
	return "", fmt.Errorf("cannot run the VM cache's daemon on node %s: the node does not run systemd (no /run/systemd/system) "+
		"and the installer was given no factory command: render the manifests with --factory-command naming the command "+
		"that starts and stops a host service on the node (it runs chrooted into the node's /, with start|restart|stop appended), "+
		"or set factory.mode to something other than \"cache\"", in.o.NodeName)
}

// factoryDefinition is what the service runs, as written for kind: the
// unit file's text for systemd, the command line for a service command.
// Its first line names the digest of the installed files and of the
// effective configuration, so that a change of either changes it.
func (o Options) factoryDefinition(kind, digest string) string {
	argv := strings.Join(o.factoryArgv(), " ")
	head := fmt.Sprintf("# Written by podvm's node installer (podvm deploy); its uninstaller removes it.\n"+
		"# podvm install and configuration %s: a change restarts the daemon.\n", digest)
	if kind != "systemd" {
		return head + argv + "\n"
	}
	// KillMode=process: a stop signals the daemon only, which stops the
	// VMs no pod took; VMs pods took run in their pods' cgroups and must
	// outlive it (docs/factory.md, "VMs that outlive the daemon").
	return head + `[Unit]
Description=podvm VM cache: pod VMs booted ahead for factory.mode = "cache" (podvm factory serve)
After=containerd.service

[Service]
ExecStart=` + argv + `
Restart=always
RestartSec=5
KillMode=process
TimeoutStopSec=90

[Install]
WantedBy=multi-user.target
`
}

// factoryStep is one thing the installer does to the service.
type factoryStep string

const (
	stepWriteUnit  factoryStep = "write unit"
	stepReload     factoryStep = "daemon-reload"
	stepEnable     factoryStep = "enable"
	stepStart      factoryStep = "start"
	stepRestart    factoryStep = "restart"
	stepStop       factoryStep = "stop"
	stepDisable    factoryStep = "disable"
	stepRemoveUnit factoryStep = "remove unit"
	stepRecord     factoryStep = "record"
	stepForget     factoryStep = "forget"
)

// factoryState is what the plan is made from.
type factoryState struct {
	kind string // "systemd" or "command"
	// want: the node's configuration has mode "cache" (and podvm stays).
	want bool
	// definition is the service's wanted definition; applied the one last
	// started ("" none); unitThere: a unit file exists (systemd).
	definition, applied string
	unitThere           bool
}

// planFactory says what brings the service to the wanted state: started
// with the wanted definition (restarted when it changed), or stopped and
// its files removed. Starting a running service changes nothing, so an
// install run twice does nothing more the second time.
func planFactory(s factoryState) []factoryStep {
	switch {
	case s.want && s.applied == s.definition && (s.kind != "systemd" || s.unitThere):
		return []factoryStep{stepStart}
	case s.want && s.kind == "systemd":
		return []factoryStep{stepWriteUnit, stepReload, stepEnable, stepRestart, stepRecord}
	case s.want:
		return []factoryStep{stepRestart, stepRecord}
	case s.applied == "" && !s.unitThere:
		return nil
	case s.kind == "systemd":
		return []factoryStep{stepStop, stepDisable, stepRemoveUnit, stepReload, stepForget}
	default:
		return []factoryStep{stepStop, stepForget}
	}
}

// convergeFactory brings the VM cache's service to what the node's
// configuration wants while podvm stays installed (stay), or stops it and
// removes its files (an uninstall).
func (in *Installer) convergeFactory(ctx context.Context, stay bool) error {
	o := in.o
	applied, err := os.ReadFile(o.host(filepath.Join(o.Prefix, appliedRel)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", filepath.Join(o.Prefix, appliedRel), err)
	}
	s := factoryState{applied: string(applied)}
	if _, err := os.Stat(o.host(o.unitPath())); err == nil {
		s.unitThere = true
	}
	var digest string
	if stay {
		mode, conf, err := in.factoryMode(ctx)
		if err != nil {
			return err
		}
		in.info("factory.mode is %q", mode)
		s.want = mode == "cache"
		sum := sha256.Sum256(append([]byte(in.installed), conf...))
		digest = fmt.Sprintf("%x", sum[:8])
	}
	if !s.want && s.applied == "" && !s.unitThere {
		return nil
	}
	if s.kind, err = in.serviceKind(); err != nil {
		return err
	}
	if s.want {
		s.definition = o.factoryDefinition(s.kind, digest)
	}
	for _, st := range planFactory(s) {
		if err := in.doFactoryStep(ctx, s, st); err != nil {
			return err
		}
	}
	return nil
}

// factoryMode asks the installed podvm, chrooted into the node, for the
// configuration the shim resolves there (the operator's files included),
// and returns its factory.mode and the whole configuration's text.
func (in *Installer) factoryMode(ctx context.Context) (string, []byte, error) {
	o := in.o
	argv := []string{filepath.Join(o.Prefix, "bin", "podvm"), "config", "show", "--prefix", o.Prefix, "-o", "json"}
	out, err := in.run(ctx, o.HostRoot, argv, nil)
	if err != nil {
		return "", nil, fmt.Errorf("podvm config show on node %s (%w):\n%s", o.NodeName, err, indent(out))
	}
	var shown struct {
		Config struct {
			Factory struct {
				Mode string `json:"mode"`
			} `json:"factory"`
		} `json:"config"`
	}
	if err := json.Unmarshal(out, &shown); err != nil {
		return "", nil, fmt.Errorf("podvm config show on node %s: %w", o.NodeName, err)
	}
	return shown.Config.Factory.Mode, out, nil
}

// doFactoryStep does one step of planFactory's plan.
func (in *Installer) doFactoryStep(ctx context.Context, s factoryState, st factoryStep) error {
	o := in.o
	switch st {
	case stepWriteUnit:
		in.info("written    %s", o.unitPath())
		return writeHostFile(o.host(o.unitPath()), []byte(s.definition))
	case stepRemoveUnit:
		in.info("removed    %s", o.unitPath())
		return removeHostFile(o.host(o.unitPath()))
	case stepRecord:
		return writeHostFile(o.host(filepath.Join(o.Prefix, appliedRel)), []byte(s.definition))
	case stepForget:
		return removeHostFile(o.host(filepath.Join(o.Prefix, appliedRel)))
	}
	argv, env := o.serviceCommand(s.kind, st)
	in.step("%s the VM cache's daemon: %s", st, strings.Join(argv, " "))
	out, err := in.run(ctx, o.HostRoot, argv, env)
	if len(out) > 0 {
		fmt.Fprintln(in.log, indent(out))
	}
	if err != nil {
		return fmt.Errorf("%s %s on node %s with `%s`: %w (its log: %s)", st, FactoryService, o.NodeName, strings.Join(argv, " "), err, o.factoryLogHint(s.kind))
	}
	if s.kind == "systemd" && (st == stepStart || st == stepRestart) {
		return in.checkActive(ctx)
	}
	return nil
}

// serviceCommand is the command that does st to the service.
func (o Options) serviceCommand(kind string, st factoryStep) (argv, env []string) {
	if kind == "systemd" {
		argv = []string{"systemctl", string(st), FactoryService}
		if st == stepReload {
			argv = argv[:2] // reloads every unit: it takes none
		}
		return argv, []string{"SYSTEMD_IGNORE_CHROOT=1"}
	}
	argv = append(append([]string{}, o.FactoryCommand...), string(st))
	if st != stepStop {
		argv = append(append(argv, "--"), o.factoryArgv()...)
	}
	return argv, nil
}

func (o Options) factoryLogHint(kind string) string {
	if kind == "systemd" {
		return "journalctl -u " + FactoryService
	}
	return "see the factory command's output above"
}

// checkActive reports a daemon that died right after its start (systemd
// restarts it, but a daemon that cannot start would go on dying).
func (in *Installer) checkActive(ctx context.Context) error {
	o := in.o
	argv := []string{"systemctl", "is-active", FactoryService}
	out, err := in.run(ctx, o.HostRoot, argv, []string{"SYSTEMD_IGNORE_CHROOT=1"})
	if state := strings.TrimSpace(string(out)); err != nil || state != "active" {
		return fmt.Errorf("%s on node %s is %q after its start, not active: see journalctl -u %s", FactoryService, o.NodeName, state, FactoryService)
	}
	return nil
}

// writeHostFile writes a file on the node atomically.
func writeHostFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".podvm-tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func removeHostFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
