package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite testdata/help/*.golden from the commands' help")

// stableEnv clears what help texts take defaults from, so that the
// golden files do not depend on the machine.
func stableEnv(t *testing.T) {
	for _, k := range []string{"PODVM_PREFIX", "PODVM_CACHE", "KUBECONFIG", "NODE_NAME", "PODVM_CONFIG"} {
		t.Setenv(k, "")
	}
}

// commandPaths lists every command of the tree, hidden ones included.
func commandPaths(c *cobra.Command) [][]string {
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(c, nil)
	return out
}

// TestHelpGolden: `podvm ... --help` of every command is what
// testdata/help holds (go test ./cmd/podvm -run TestHelpGolden -update
// rewrites it after a deliberate change).
func TestHelpGolden(t *testing.T) {
	stableEnv(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	paths := commandPaths(newRootCommand())
	if len(paths) < 30 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, path := range paths {
		name := strings.Join(append([]string{"podvm"}, path...), "_")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append(append([]string(nil), path...), "--help"), &stdout, &stderr); code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			// The test binary's directory stands in for podvm's own.
			got := strings.ReplaceAll(stdout.String(), filepath.Dir(self), "$BINDIR")
			golden := filepath.Join("testdata", "help", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("help of %s differs from %s (run with -update after a deliberate change):\n%s", name, golden, got)
			}
		})
	}
}
