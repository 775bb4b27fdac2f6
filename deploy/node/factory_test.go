package node

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPlanFactory(t *testing.T) {
	const def, old = "definition v2", "definition v1"
	for _, tc := range []struct {
		name string
		s    factoryState
		want []factoryStep
	}{
		{"none wanted, none there", factoryState{kind: "systemd"}, nil},
		{"systemd: first start", factoryState{kind: "systemd", want: true, definition: def},
			[]factoryStep{stepWriteUnit, stepReload, stepEnable, stepRestart, stepRecord}},
		{"systemd: unchanged", factoryState{kind: "systemd", want: true, definition: def, applied: def, unitThere: true}, []factoryStep{stepStart}},
		{"systemd: image or configuration changed", factoryState{kind: "systemd", want: true, definition: def, applied: old, unitThere: true},
			[]factoryStep{stepWriteUnit, stepReload, stepEnable, stepRestart, stepRecord}},
		{"systemd: unit removed by hand", factoryState{kind: "systemd", want: true, definition: def, applied: def},
			[]factoryStep{stepWriteUnit, stepReload, stepEnable, stepRestart, stepRecord}},
		{"systemd: unit written, run cut short before its start", factoryState{kind: "systemd", want: true, definition: def, unitThere: true},
			[]factoryStep{stepWriteUnit, stepReload, stepEnable, stepRestart, stepRecord}},
		{"systemd: mode no longer cache", factoryState{kind: "systemd", applied: old, unitThere: true},
			[]factoryStep{stepStop, stepDisable, stepRemoveUnit, stepReload, stepForget}},
		{"systemd: a unit left without a record", factoryState{kind: "systemd", unitThere: true},
			[]factoryStep{stepStop, stepDisable, stepRemoveUnit, stepReload, stepForget}},
		{"command: first start", factoryState{kind: "command", want: true, definition: def}, []factoryStep{stepRestart, stepRecord}},
		{"command: unchanged", factoryState{kind: "command", want: true, definition: def, applied: def}, []factoryStep{stepStart}},
		{"command: changed", factoryState{kind: "command", want: true, definition: def, applied: old}, []factoryStep{stepRestart, stepRecord}},
		{"command: mode no longer cache", factoryState{kind: "command", applied: old}, []factoryStep{stepStop, stepForget}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planFactory(tc.s); !slices.Equal(got, tc.want) {
				t.Errorf("plan = %q, want %q", got, tc.want)
			}
		})
	}
}

// serviceCommands are the commands that acted on the VM cache's service.
func (f *fakeNode) serviceCommands() [][]string {
	var out [][]string
	for _, c := range f.commands {
		if f.isService(c) {
			out = append(out, c)
		}
	}
	return out
}

func TestFactoryServiceSystemd(t *testing.T) {
	f := newFakeNode(t)
	f.mode = "cache"
	if err := os.MkdirAll(filepath.Join(f.o.HostRoot, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	in := f.installer()
	if err := in.Install(context.Background()); err != nil {
		t.Fatalf("install: %v\n%s", err, f.log.String())
	}
	unit, err := os.ReadFile(filepath.Join(f.o.HostRoot, "/etc/systemd/system/podvm-factory.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/opt/podvm/bin/podvm factory serve --prefix /opt/podvm\n", "After=containerd.service\n",
		"Restart=always\n", "KillMode=process\n", "WantedBy=multi-user.target\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	want := [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "enable", "podvm-factory"},
		{"systemctl", "restart", "podvm-factory"}, {"systemctl", "is-active", "podvm-factory"}}
	if got := f.serviceCommands(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("service commands = %q, want %q", got, want)
	}
	if f.labels["podvm.io/runtime"] != "ready" {
		t.Errorf("not labelled: %v", f.labels)
	}

	// Again: the running daemon is left as it is.
	f.commands = nil
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = [][]string{{"systemctl", "start", "podvm-factory"}, {"systemctl", "is-active", "podvm-factory"}}
	if got := f.serviceCommands(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("second install: service commands = %q, want %q", got, want)
	}

	// A configuration change (or a new image) restarts it.
	f.commands, f.cacheSize = nil, 4
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.serviceCommands(); !slices.ContainsFunc(got, func(c []string) bool { return slices.Equal(c, []string{"systemctl", "restart", "podvm-factory"}) }) {
		t.Errorf("a changed configuration did not restart the daemon: %q", got)
	}

	// Uninstall: the daemon stops, and its unit goes, before podvm
	// factory clean, which refuses while it runs.
	f.commands = nil
	if err := in.Uninstall(context.Background()); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, f.log.String())
	}
	stop := slices.IndexFunc(f.commands, func(c []string) bool { return slices.Equal(c, []string{"systemctl", "stop", "podvm-factory"}) })
	clean := slices.IndexFunc(f.commands, func(c []string) bool { return slices.Contains(c, "clean") })
	if stop < 0 || clean < 0 || stop > clean {
		t.Errorf("want the daemon stopped before podvm factory clean: %q", f.commands)
	}
	if f.exists("/etc/systemd/system/podvm-factory.service") || f.exists(filepath.Join(f.o.Prefix, appliedRel)) || f.exists(f.o.Prefix) {
		t.Errorf("unit, record or prefix left after uninstall")
	}
}

func TestFactoryServiceCommand(t *testing.T) {
	f := newFakeNode(t)
	f.mode = "cache"
	f.o.RestartCommand = []string{"restart-containerd"}
	f.o.FactoryCommand = []string{"/usr/local/bin/service", "--dir", "/x"}
	in := f.installer()
	if err := in.Install(context.Background()); err != nil {
		t.Fatalf("install: %v\n%s", err, f.log.String())
	}
	argv := []string{"--", "/opt/podvm/bin/podvm", "factory", "serve", "--prefix", "/opt/podvm"}
	want := [][]string{append([]string{"/usr/local/bin/service", "--dir", "/x", "restart"}, argv...)}
	if got := f.serviceCommands(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("service commands = %q, want %q", got, want)
	}

	f.commands = nil
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = [][]string{append([]string{"/usr/local/bin/service", "--dir", "/x", "start"}, argv...)}
	if got := f.serviceCommands(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("second install: service commands = %q, want %q", got, want)
	}

	// A new guest image in the installer's image restarts the daemon.
	write(t, filepath.Join(f.o.Payload, "share/podvm/vmlinux"), "a new kernel")
	f.commands = nil
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.serviceCommands(); len(got) != 1 || got[0][3] != "restart" {
		t.Errorf("a new image: service commands = %q, want a restart", got)
	}

	// The mode goes back to none: the daemon stops.
	f.mode, f.commands = "none", nil
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = [][]string{{"/usr/local/bin/service", "--dir", "/x", "stop"}}
	if got := f.serviceCommands(); !slices.EqualFunc(got, want, slices.Equal) || f.exists(filepath.Join(f.o.Prefix, appliedRel)) {
		t.Errorf("mode none: service commands = %q, want %q and no record", got, want)
	}
}

func TestFactoryServiceFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		systemd bool
		active  string
		wantErr string
	}{
		{name: "neither systemd nor a command", wantErr: "given no factory command"},
		{name: "dies at its start", systemd: true, active: "failed", wantErr: `podvm-factory on node node-1 is "failed" after its start, not active: see journalctl -u podvm-factory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t)
			f.mode, f.active = "cache", tc.active
			f.o.RestartCommand = []string{"restart"}
			if tc.systemd {
				if err := os.MkdirAll(filepath.Join(f.o.HostRoot, "run/systemd/system"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := f.installer().Install(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if len(f.labels) != 0 {
				t.Errorf("labelled although the VM cache's daemon does not run")
			}
		})
	}
}
