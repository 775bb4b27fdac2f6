package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/deploy"
)

// fakeKubectl is a kubectl that answers `get namespaces` with one podvm
// namespace whose record is rec.
func fakeKubectl(t *testing.T, rec deploy.Options) string {
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	list, err := json.Marshal(map[string]any{"items": []any{map[string]any{"metadata": map[string]any{
		"name": rec.Namespace, "annotations": map[string]string{deploy.OptionsAnnotation: string(b)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "list.json"), list, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "kubectl")
	text := "#!/bin/sh\ncase \"$*\" in *'get namespaces'*) cat " + filepath.Join(dir, "list.json") + ";; *) echo \"unexpected: $*\" >&2; exit 1;; esac\n"
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// uninstall takes the install's record, and flags given again on top of it.
func TestUninstallUsesTheRecord(t *testing.T) {
	rec := deploy.DefaultOptions()
	rec.Image, rec.Namespace, rec.HostPrefix = "registry/podvm/installer:v1", "podvm-x", "/rec/podvm"
	rec.RestartCommand, rec.NodeSelector = "/bin/restart now", map[string]string{"pool": "vm"}
	k := deploy.Kubectl{Path: fakeKubectl(t, rec)}
	for _, tt := range []struct {
		args []string
		want func(o *deploy.Options)
	}{
		{nil, func(*deploy.Options) {}},
		{[]string{"--prefix", "/given"}, func(o *deploy.Options) { o.HostPrefix = "/given" }},
		{[]string{"--host-prefix", "/old-name"}, func(o *deploy.Options) { o.HostPrefix = "/old-name" }},
		{[]string{"-l", "a=b,c=d"}, func(o *deploy.Options) { o.NodeSelector = map[string]string{"a": "b", "c": "d"} }},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := newDeployInstallCommand(true)
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := installedOptions(context.Background(), cmd, k, deploy.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			want := rec
			tt.want(&want)
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(want)
			if string(a) != string(b) {
				t.Errorf("options\n%s\nwant\n%s", a, b)
			}
		})
	}
}
