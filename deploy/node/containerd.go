package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/runtime/config"
)

// mainConfig is what the installer reads of containerd's configuration.
type mainConfig struct {
	Version int      `toml:"version"`
	Imports []string `toml:"imports"`
}

// DropIn is the drop-in file adding handler to containerd's CRI, in the
// config version of the file that imports it (2: containerd 1.7; 3 and 4:
// containerd 2.x, whose CRI runtime plugin is io.containerd.cri.v1.runtime).
// The handler has options only for a config other than the install's own
// (config.Handler: the containerd 2.4 user namespace workaround).
func DropIn(version int, handler, shim, podvmConfig string) (string, error) {
	h := config.Handler{Name: handler, Shim: shim, ConfigPath: podvmConfig}
	switch {
	case version == 2:
		h.Plugin = config.CRIPluginV2
	case version >= 3:
		h.Plugin = config.CRIRuntimePlugin
	default:
		return "", fmt.Errorf("containerd configuration version %d is not supported (containerd 1.6 or older): "+
			"migrate it with `containerd config migrate` (containerd 1.7 or 2.x)", version)
	}
	return fmt.Sprintf(`# Written by podvm's node installer (podvm deploy); its uninstaller removes it.
# Adds the %[2]q runtime handler. containerd's own configuration is not edited.
version = %[1]d

%[3]s`, version, handler, h.TOML()), nil
}

// importsDropIn checks that containerd's configuration (main, a host path)
// imports the drop-in file, directly or through a file it imports, and
// returns the main file's config version. Without that import the drop-in
// would be ignored: the error names the line the operator must add.
func (in *Installer) importsDropIn() (int, error) {
	o := in.o
	b, err := os.ReadFile(o.host(o.ContainerdConfig))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("containerd has no configuration file at %s on node %s, so it reads no drop-in files: "+
			"create one that imports them, e.g. `containerd config default > %s` (it contains imports = [%q]), "+
			"restart containerd, and run the installer again (or point --containerd-config at the file it uses)",
			o.ContainerdConfig, o.NodeName, o.ContainerdConfig, filepath.Join(o.DropInDir, "*.toml"))
	} else if err != nil {
		return 0, fmt.Errorf("read containerd's configuration %s: %w", o.ContainerdConfig, err)
	}
	var main mainConfig
	if err := toml.Unmarshal(b, &main); err != nil {
		return 0, fmt.Errorf("parse containerd's configuration %s: %w", o.ContainerdConfig, err)
	}
	if covers(o.ContainerdConfig, main.Imports, o.dropIn()) {
		return main.Version, nil
	}
	// containerd follows imports of imported files too.
	seen := map[string]bool{o.ContainerdConfig: true}
	pending := resolveImports(o.ContainerdConfig, main.Imports, o.host)
	for len(pending) > 0 && len(seen) < 256 {
		path := pending[0]
		pending = pending[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		var c mainConfig
		if b, err := os.ReadFile(o.host(path)); err != nil || toml.Unmarshal(b, &c) != nil {
			continue
		}
		if covers(path, c.Imports, o.dropIn()) {
			return main.Version, nil
		}
		pending = append(pending, resolveImports(path, c.Imports, o.host)...)
	}
	return 0, fmt.Errorf("containerd's configuration %s on node %s does not import %s, so containerd would ignore podvm's drop-in: "+
		"add this line at the top of %s (before any [table]), restart containerd, and run the installer again:\n    imports = [%q]\n"+
		"(or point the installer at a drop-in directory it already imports: --containerd-dropin-dir; podvm never edits that file itself)",
		o.ContainerdConfig, o.NodeName, o.dropIn(), o.ContainerdConfig, filepath.Join(o.DropInDir, "*.toml"))
}

// covers tells whether one of imports (as written in file parent) names
// target, literally or by a glob, the way containerd resolves them.
func covers(parent string, imports []string, target string) bool {
	for _, imp := range imports {
		p := filepath.Clean(imp)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(parent), p)
		}
		if p == target {
			return true
		}
		if ok, err := filepath.Match(p, target); err == nil && ok {
			return true
		}
	}
	return false
}

// resolveImports lists the existing files imports name (globs expanded on
// the node), as host paths.
func resolveImports(parent string, imports []string, host func(string) string) []string {
	var out []string
	for _, imp := range imports {
		p := filepath.Clean(imp)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(parent), p)
		}
		matches, _ := filepath.Glob(host(p))
		for _, m := range matches {
			rel, err := filepath.Rel(host("/"), m)
			if err == nil {
				out = append(out, "/"+rel)
			}
		}
	}
	return out
}

// writeDropIn writes the drop-in unless it already has that content, and
// tells whether it changed.
func (in *Installer) writeDropIn() (bool, error) {
	o := in.o
	version, err := in.importsDropIn()
	if err != nil {
		return false, err
	}
	text, err := DropIn(version, o.Handler, o.shim(), o.podvmConfig())
	if err != nil {
		return false, fmt.Errorf("%s: %w", o.ContainerdConfig, err)
	}
	path := o.host(o.dropIn())
	if same, _ := sameContent(path, []byte(text)); same {
		in.info("unchanged  %s", o.dropIn())
		return false, nil
	}
	if err := writeHostFile(path, []byte(text)); err != nil {
		return false, fmt.Errorf("containerd drop-in: %w", err)
	}
	in.info("written    %s (config version %d)", o.dropIn(), version)
	return true, nil
}

// removeDropIn removes the drop-in if it is there, and tells whether it was.
func (in *Installer) removeDropIn() (bool, error) {
	switch err := os.Remove(in.o.host(in.o.dropIn())); {
	case err == nil:
		in.info("removed    %s", in.o.dropIn())
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		in.info("%s is not there", in.o.dropIn())
		return false, nil
	default:
		return false, fmt.Errorf("remove %s: %w", in.o.dropIn(), err)
	}
}

// converge restarts containerd when the drop-in changed or containerd's
// handlers disagree with what is wanted (a run cut short between writing
// the drop-in and the restart), then waits until containerd serves the
// handler (want) or no longer does.
func (in *Installer) converge(ctx context.Context, changed, want bool) error {
	o := in.o
	sock := o.host(o.ContainerdSocket)
	handlers, err := in.cri(ctx, sock)
	if err != nil {
		return fmt.Errorf("ask containerd which runtime handlers it serves (CRI socket %s): %w "+
			"(set --containerd-socket to the node's CRI socket)", o.ContainerdSocket, err)
	}
	if !changed && slices.Contains(handlers, o.Handler) == want {
		in.step("containerd already serves what it should (handlers %s): no restart", strings.Join(handlers, ", "))
		return nil
	}
	argv, env, how, err := in.restartCommand()
	if err != nil {
		return err
	}
	in.step("restart containerd (%s): %s", how, strings.Join(argv, " "))
	if out, err := in.run(ctx, o.HostRoot, argv, env); err != nil {
		return fmt.Errorf("restart containerd on node %s with `%s`: %w\n%s", o.NodeName, strings.Join(argv, " "), err, indent(out))
	} else if len(out) > 0 {
		in.info("%s", strings.TrimSpace(string(out)))
	}
	return in.waitHandler(ctx, sock, want)
}

// restartCommand picks how to restart containerd on this node: the
// configured command, else systemd when the node runs it.
func (in *Installer) restartCommand() (argv, env []string, how string, err error) {
	o := in.o
	if len(o.RestartCommand) > 0 {
		return o.RestartCommand, nil, "the configured restart command", nil
	}
	// sd_booted(3): systemd is the node's init when this directory exists.
	if st, err := os.Stat(o.host("/run/systemd/system")); err == nil && st.IsDir() {
		// SYSTEMD_IGNORE_CHROOT: systemctl would otherwise refuse to act
		// from a chroot it cannot tell apart from an image build.
		return []string{"systemctl", "restart", o.ContainerdUnit}, []string{"SYSTEMD_IGNORE_CHROOT=1"}, "systemd unit " + o.ContainerdUnit, nil
	}
	return nil, nil, "", fmt.Errorf("cannot restart containerd on node %s: the node does not run systemd (no /run/systemd/system) "+
		"and the installer was given no restart command: render the manifests with --restart-command naming the command "+
		"that restarts containerd on the node (it runs chrooted into the node's /)", o.NodeName)
}

// waitHandler waits until containerd answers on its CRI socket and lists
// the handler (want) or does not.
func (in *Installer) waitHandler(ctx context.Context, sock string, want bool) error {
	o := in.o
	deadline := time.Now().Add(o.CRITimeout)
	var last string
	for {
		handlers, err := in.cri(ctx, sock)
		switch {
		case err != nil:
			last = "CRI not answering: " + err.Error()
		case slices.Contains(handlers, o.Handler) == want:
			in.info("containerd is back, serving handlers %s", strings.Join(handlers, ", "))
			return nil
		default:
			last = "handlers " + strings.Join(handlers, ", ")
		}
		if time.Now().After(deadline) {
			what := "serve"
			if !want {
				what = "stop serving"
			}
			return fmt.Errorf("containerd on node %s did not %s handler %q within %s of the restart (last: %s): "+
				"see containerd's log on the node (journalctl -u %s); a drop-in it cannot parse, or a handler %q "+
				"configured in another file, are the usual causes", o.NodeName, what, o.Handler, o.CRITimeout, last, o.ContainerdUnit, o.Handler)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(in.poll):
		}
	}
}

func indent(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
