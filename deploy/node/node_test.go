package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// fakeNode is a node's / in a temporary directory, with a containerd that
// serves the handler when its drop-in exists at the last restart.
type fakeNode struct {
	t        *testing.T
	o        Options
	commands [][]string
	envs     [][]string
	labels   map[string]string
	serving  []string // handlers containerd serves now
	checkErr error
	log      bytes.Buffer
	// mode is factory.mode in the node's configuration; queries are the
	// commands that only read the node (podvm config show), not in
	// commands.
	mode      string
	cacheSize int
	queries   [][]string
	// active is what `systemctl is-active` answers.
	active string
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	root, payload := t.TempDir(), t.TempDir()
	for _, f := range payloadFiles {
		if f.optional {
			continue
		}
		write(t, filepath.Join(payload, f.rel), "content of "+f.rel)
	}
	o := Defaults()
	o.HostRoot, o.Payload, o.NodeName = root, payload, "node-1"
	o.CRITimeout = 2 * time.Second
	write(t, filepath.Join(root, o.ContainerdConfig), "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n")
	write(t, filepath.Join(root, o.ContainerdSocket), "")
	return &fakeNode{t: t, o: o, labels: map[string]string{}, serving: []string{"runc"}, mode: "none", cacheSize: 2, active: "active"}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeNode) installer() *Installer {
	in := New(f.o, f.run, f, f.cri, &f.log)
	in.poll = 10 * time.Millisecond
	return in
}

func (f *fakeNode) run(_ context.Context, root string, argv, env []string) ([]byte, error) {
	if root != f.o.HostRoot {
		f.t.Errorf("command %v runs in %s, want chrooted into the host root %s", argv, root, f.o.HostRoot)
	}
	if slices.Contains(argv, "config") && slices.Contains(argv, "show") {
		f.queries = append(f.queries, argv)
		return fmt.Appendf(nil, `{"sources": [], "config": {"factory": {"mode": %q, "cache_size": %d}}}`, f.mode, f.cacheSize), nil
	}
	f.commands = append(f.commands, argv)
	f.envs = append(f.envs, env)
	if slices.Contains(argv, "is-active") {
		return []byte(f.active + "\n"), nil
	}
	if f.isService(argv) {
		return nil, nil
	}
	if slices.Contains(argv, "check") {
		return []byte("ok  config\n"), f.checkErr
	}
	if slices.Contains(argv, "factory") {
		return nil, nil
	}
	// A restart: containerd now serves the handler if the drop-in is there.
	f.serving = []string{"runc"}
	if _, err := os.Stat(filepath.Join(f.o.HostRoot, f.o.dropIn())); err == nil {
		f.serving = append(f.serving, f.o.Handler)
	}
	return nil, nil
}

func (f *fakeNode) cri(_ context.Context, socket string) ([]string, error) {
	if socket != filepath.Join(f.o.HostRoot, f.o.ContainerdSocket) {
		f.t.Errorf("CRI asked on %s", socket)
	}
	return f.serving, nil
}

func (f *fakeNode) Label(_ context.Context, node, key, value string) error {
	if node != f.o.NodeName {
		f.t.Errorf("labelled node %q, want %q", node, f.o.NodeName)
	}
	if value == "" {
		delete(f.labels, key)
	} else {
		f.labels[key] = value
	}
	return nil
}

func (f *fakeNode) restarts() int {
	n := 0
	for _, c := range f.commands {
		if !slices.Contains(c, "check") && !slices.Contains(c, "factory") && !f.isService(c) {
			n++
		}
	}
	return n
}

func (f *fakeNode) exists(hostPath string) bool {
	_, err := os.Stat(filepath.Join(f.o.HostRoot, hostPath))
	return err == nil
}

func TestInstallThenUninstall(t *testing.T) {
	f := newFakeNode(t)
	f.o.Prefix = "/opt/custom-podvm"
	f.o.RestartCommand = []string{"/usr/local/bin/restart-containerd", "--now"}
	in := f.installer()
	if err := in.Install(context.Background()); err != nil {
		t.Fatalf("install: %v\n%s", err, f.log.String())
	}
	for _, p := range payloadFiles {
		if !p.optional && !f.exists(filepath.Join(f.o.Prefix, p.rel)) {
			t.Errorf("%s not installed", p.rel)
		}
	}
	if st, err := os.Stat(filepath.Join(f.o.HostRoot, f.o.Prefix, "bin/containerd-shim-podvm-v2")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("shim mode: %v %v", st, err)
	}
	cfg, _ := os.ReadFile(filepath.Join(f.o.HostRoot, f.o.podvmConfig()))
	if !strings.Contains(string(cfg), `"/opt/custom-podvm/share/podvm/vmlinux"`) || strings.Contains(string(cfg), `"/opt/podvm/`) {
		t.Errorf("config does not point at the prefix:\n%s", cfg)
	}
	wantCheck := []string{"/opt/custom-podvm/bin/podvm", "check", "--config", "/opt/custom-podvm/share/podvm/config.toml"}
	if len(f.commands) != 2 || !slices.Equal(f.commands[0], wantCheck) || !slices.Equal(f.commands[1], f.o.RestartCommand) {
		t.Errorf("commands = %q, want the check %q then the restart command", f.commands, wantCheck)
	}
	var drop struct {
		Version int
		Plugins map[string]struct {
			Containerd struct {
				Runtimes map[string]struct {
					RuntimeType string `toml:"runtime_type"`
					RuntimePath string `toml:"runtime_path"`
					Options     struct{ ConfigPath string }
				}
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(f.o.HostRoot, "/etc/containerd/conf.d/podvm.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := toml.Unmarshal(b, &drop); err != nil {
		t.Fatalf("drop-in does not parse: %v\n%s", err, b)
	}
	rt := drop.Plugins["io.containerd.cri.v1.runtime"].Containerd.Runtimes["podvm"]
	if drop.Version != 3 || rt.RuntimeType != "io.containerd.podvm.v2" || rt.RuntimePath != "/opt/custom-podvm/bin/containerd-shim-podvm-v2" ||
		rt.Options.ConfigPath != "" || !strings.Contains(string(b), "the shim reads /opt/custom-podvm/share/podvm/config.toml") {
		t.Errorf("drop-in = %+v\n%s", drop, b)
	}
	if f.labels["podvm.io/runtime"] != "ready" {
		t.Errorf("labels = %v", f.labels)
	}
	// The operator's own config is untouched.
	if main, _ := os.ReadFile(filepath.Join(f.o.HostRoot, f.o.ContainerdConfig)); string(main) != "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n" {
		t.Errorf("main config changed:\n%s", main)
	}

	// Again: nothing changes, containerd is not restarted.
	f.commands = nil
	if err := in.Install(context.Background()); err != nil {
		t.Fatalf("second install: %v", err)
	}
	if f.restarts() != 0 {
		t.Errorf("second install restarted containerd: %q", f.commands)
	}
	if !strings.Contains(f.log.String(), "unchanged  /opt/custom-podvm/bin/podvm") {
		t.Errorf("second install did not report unchanged files:\n%s", f.log.String())
	}

	// An operator's own file in the prefix survives the uninstall.
	write(t, filepath.Join(f.o.HostRoot, f.o.Prefix, "share/podvm/operator-notes.txt"), "mine")
	f.commands = nil
	if err := in.Uninstall(context.Background()); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, f.log.String())
	}
	if len(f.labels) != 0 || f.exists(f.o.dropIn()) || slices.Contains(f.serving, "podvm") || f.restarts() != 1 {
		t.Errorf("after uninstall: labels %v, drop-in there %v, serving %v, commands %q", f.labels, f.exists(f.o.dropIn()), f.serving, f.commands)
	}
	if !slices.ContainsFunc(f.commands, func(c []string) bool { return len(c) >= 3 && slices.Equal(c[1:3], []string{"factory", "clean"}) }) {
		t.Errorf("uninstall did not run podvm factory clean: %q", f.commands)
	}
	for _, p := range payloadFiles {
		if f.exists(filepath.Join(f.o.Prefix, p.rel)) {
			t.Errorf("%s left after uninstall", p.rel)
		}
	}
	if f.exists(filepath.Join(f.o.Prefix, "bin")) || !f.exists(filepath.Join(f.o.Prefix, "share/podvm/operator-notes.txt")) {
		t.Errorf("want bin/ gone and the operator's file kept")
	}

	// Uninstall again: nothing to do, no restart.
	f.commands = nil
	if err := in.Uninstall(context.Background()); err != nil {
		t.Fatalf("second uninstall: %v", err)
	}
	if len(f.commands) != 0 {
		t.Errorf("second uninstall ran %q", f.commands)
	}
}

func TestUninstallRemovesThePrefix(t *testing.T) {
	f := newFakeNode(t)
	f.o.RestartCommand = []string{"restart"}
	in := f.installer()
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := in.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.exists(f.o.Prefix) {
		t.Errorf("%s left after uninstall", f.o.Prefix)
	}
}

// A run cut short after writing the drop-in but before the restart: the
// next run finds the drop-in unchanged, but containerd does not serve the
// handler, so it restarts anyway.
func TestInstallFinishesARunCutShort(t *testing.T) {
	f := newFakeNode(t)
	f.o.RestartCommand = []string{"restart"}
	text, err := DropIn(3, "podvm", f.o.shim(), f.o.podvmConfig())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.o.HostRoot, f.o.dropIn()), text)
	if err := f.installer().Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.restarts() != 1 || !slices.Contains(f.serving, "podvm") {
		t.Errorf("restarts %d, serving %v: want one restart and the handler served", f.restarts(), f.serving)
	}
}

func TestCheckFailureChangesNothingInContainerd(t *testing.T) {
	f := newFakeNode(t)
	f.o.RestartCommand = []string{"restart"}
	f.checkErr = errors.New("exit status 1")
	err := f.installer().Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), "podvm check failed on node node-1") || !strings.Contains(err.Error(), "not labelled") {
		t.Fatalf("err = %v", err)
	}
	if f.exists(f.o.dropIn()) || f.restarts() != 0 || len(f.labels) != 0 {
		t.Errorf("a failed check changed containerd or the label: %q %v", f.commands, f.labels)
	}
}

func TestUninstallRefusesWhilePodVMsRun(t *testing.T) {
	f := newFakeNode(t)
	f.o.RestartCommand = []string{"restart"}
	write(t, filepath.Join(f.o.HostRoot, "proc/4242/cmdline"), f.o.shim()+"\x00-namespace\x00k8s.io\x00")
	write(t, filepath.Join(f.o.HostRoot, "proc/4243/cmdline"), "/usr/bin/containerd\x00")
	err := f.installer().Uninstall(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 podvm pod VM(s) still run on node node-1 (shim pids 4242)") {
		t.Fatalf("err = %v", err)
	}
	if len(f.commands) != 0 {
		t.Errorf("ran %q despite running pods", f.commands)
	}
}

func TestRestartSelection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command []string
		systemd bool
		want    []string
		wantEnv string
		wantErr string
	}{
		{name: "systemd node", systemd: true, want: []string{"systemctl", "restart", "containerd"}, wantEnv: "SYSTEMD_IGNORE_CHROOT=1"},
		{name: "command wins over systemd", systemd: true, command: []string{"/opt/bin/restart", "--dir", "/x"}, want: []string{"/opt/bin/restart", "--dir", "/x"}},
		{name: "command without systemd", command: []string{"rc-service", "containerd", "restart"}, want: []string{"rc-service", "containerd", "restart"}},
		{name: "neither", wantErr: "does not run systemd (no /run/systemd/system) and the installer was given no restart command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t)
			f.o.RestartCommand = tc.command
			if tc.systemd {
				if err := os.MkdirAll(filepath.Join(f.o.HostRoot, "run/systemd/system"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := f.installer().Install(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if len(f.labels) != 0 {
					t.Errorf("labelled although containerd was not restarted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := f.commands[len(f.commands)-1]
			if !slices.Equal(last, tc.want) {
				t.Errorf("restart = %q, want %q", last, tc.want)
			}
			if env := f.envs[len(f.envs)-1]; tc.wantEnv != "" && !slices.Contains(env, tc.wantEnv) {
				t.Errorf("restart env = %q, want %s", env, tc.wantEnv)
			}
		})
	}
}

func TestContainerdImports(t *testing.T) {
	for _, tc := range []struct {
		name    string
		main    string
		extra   map[string]string // other host files
		dropDir string
		want    string // plugin table in the drop-in
		wantErr string
	}{
		{name: "containerd 2 default glob", main: "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n", want: `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.podvm`},
		{name: "version 4", main: "version = 4\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n", want: "version = 4"},
		{name: "relative import", main: "version = 3\nimports = [\"conf.d/*.toml\"]\n", want: "version = 3"},
		{name: "literal file", main: "version = 3\nimports = [\"/etc/containerd/conf.d/podvm.toml\"]\n", want: "version = 3"},
		{name: "containerd 1.7", main: "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n", want: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.podvm`},
		{name: "through an imported file", main: "version = 3\nimports = [\"/etc/containerd/base.toml\"]\n",
			extra: map[string]string{"/etc/containerd/base.toml": "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"}, want: "version = 3"},
		{name: "own drop-in dir", main: "version = 3\nimports = [\"/var/lib/k/containerd.d/*.toml\"]\n", dropDir: "/var/lib/k/containerd.d", want: "version = 3"},
		{name: "no imports", main: "version = 3\n[plugins]\n",
			wantErr: "does not import /etc/containerd/conf.d/podvm.toml, so containerd would ignore podvm's drop-in: add this line at the top of /etc/containerd/config.toml (before any [table]), restart containerd, and run the installer again:\n    imports = [\"/etc/containerd/conf.d/*.toml\"]"},
		{name: "imports elsewhere", main: "version = 3\nimports = [\"/etc/containerd/other/*.toml\"]\n", wantErr: `imports = ["/etc/containerd/conf.d/*.toml"]`},
		{name: "version 1", main: "imports = [\"/etc/containerd/conf.d/*.toml\"]\n", wantErr: "configuration version 0 is not supported"},
		{name: "no config file", main: "", wantErr: "containerd has no configuration file at /etc/containerd/config.toml on node node-1"},
		{name: "syntax error", main: "version = \n", wantErr: "parse containerd's configuration /etc/containerd/config.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t)
			f.o.RestartCommand = []string{"restart"}
			if tc.dropDir != "" {
				f.o.DropInDir = tc.dropDir
			}
			mainPath := filepath.Join(f.o.HostRoot, f.o.ContainerdConfig)
			if tc.main == "" {
				os.Remove(mainPath)
			} else {
				write(t, mainPath, tc.main)
			}
			for p, text := range tc.extra {
				write(t, filepath.Join(f.o.HostRoot, p), text)
			}
			err := f.installer().Install(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant %q", err, tc.wantErr)
				}
				if f.exists(f.o.dropIn()) || f.restarts() != 0 {
					t.Errorf("wrote the drop-in or restarted containerd despite the error")
				}
				return
			}
			if err != nil {
				t.Fatalf("install: %v", err)
			}
			b, _ := os.ReadFile(filepath.Join(f.o.HostRoot, f.o.dropIn()))
			if !strings.Contains(string(b), tc.want) {
				t.Errorf("drop-in lacks %q:\n%s", tc.want, b)
			}
			var any map[string]any
			if err := toml.Unmarshal(b, &any); err != nil {
				t.Errorf("drop-in does not parse: %v", err)
			}
		})
	}
}

func TestWaitHandlerTimesOut(t *testing.T) {
	f := newFakeNode(t)
	f.o.RestartCommand = []string{"restart"}
	f.o.CRITimeout = 50 * time.Millisecond
	in := f.installer()
	in.run = func(context.Context, string, []string, []string) ([]byte, error) { return nil, nil } // restart that changes nothing
	err := in.Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), `did not serve handler "podvm" within 50ms of the restart`) {
		t.Fatalf("err = %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{name: "no node name", mod: func(o *Options) { o.NodeName = "" }, wantErr: "node name"},
		{name: "relative prefix", mod: func(o *Options) { o.Prefix = "opt/podvm" }, wantErr: "not an absolute path"},
		{name: "prefix /", mod: func(o *Options) { o.Prefix = "/" }, wantErr: "a directory of its own"},
		{name: "bad handler", mod: func(o *Options) { o.Handler = "pod vm" }, wantErr: "not a DNS label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults()
			o.NodeName = "n"
			tc.mod(&o)
			if err := o.validate(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestDropInOptions: the handler has no options when the config is the
// install's own (user namespace pods need that with containerd 2.4), and
// names any other config with ConfigPath.
func TestDropInOptions(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		wantOption   bool
	}{
		{"the install's config", "/opt/podvm/share/podvm/config.toml", false},
		{"another config", "/etc/podvm/clh.toml", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, err := DropIn(3, "podvm", "/opt/podvm/bin/containerd-shim-podvm-v2", tc.config)
			if err != nil {
				t.Fatal(err)
			}
			var drop struct {
				Plugins map[string]struct {
					Containerd struct {
						Runtimes map[string]struct {
							RuntimePath string `toml:"runtime_path"`
							Options     *struct{ ConfigPath string }
						}
					}
				}
			}
			if err := toml.Unmarshal([]byte(text), &drop); err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			rt := drop.Plugins["io.containerd.cri.v1.runtime"].Containerd.Runtimes["podvm"]
			if got := rt.Options != nil; got != tc.wantOption || (got && rt.Options.ConfigPath != tc.config) {
				t.Errorf("options %+v, want ConfigPath only for another config:\n%s", rt.Options, text)
			}
		})
	}
}

// isService tells whether c acts on the VM cache's service.
func (f *fakeNode) isService(c []string) bool {
	if slices.Contains(c, FactoryService) || slices.Equal(c, []string{"systemctl", "daemon-reload"}) {
		return true
	}
	n := len(f.o.FactoryCommand)
	return n > 0 && len(c) >= n && slices.Equal(c[:n], f.o.FactoryCommand)
}
