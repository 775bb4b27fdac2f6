package hostcgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idleCgroup makes two hierarchies under a temp dir with cgroup path
// "/pool" in each; the second one's holds the files given.
func idleCgroup(t *testing.T, files ...string) *Cgroup {
	t.Helper()
	root := t.TempDir()
	var hs []hierarchy
	for i, name := range []string{"memory", "cpu"} {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "pool"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if i == 1 {
				os.WriteFile(filepath.Join(dir, "pool", f), []byte("0\n"), 0o644)
			}
		}
		hs = append(hs, hierarchy{dir: dir})
	}
	return &Cgroup{path: "/pool", hs: hs}
}

func TestSetIdlePrefersCPUIdle(t *testing.T) {
	c := idleCgroup(t, "cpu.shares", "cpu.idle")
	knob, err := c.SetIdle()
	if err != nil || knob != "cpu.idle=1" {
		t.Fatalf("SetIdle = %q, %v; want cpu.idle=1", knob, err)
	}
	b, _ := os.ReadFile(filepath.Join(c.hs[1].dir, "pool", "cpu.idle"))
	if !strings.HasPrefix(string(b), "1") {
		t.Errorf("cpu.idle holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(c.hs[1].dir, "pool", "cpu.shares")); string(b) != "0\n" {
		t.Errorf("cpu.shares was written too: %q", b)
	}
}

func TestSetIdleFallsBackToTheLowestWeight(t *testing.T) {
	c := idleCgroup(t, "cpu.shares")
	if knob, err := c.SetIdle(); err != nil || knob != "cpu.shares=2" {
		t.Fatalf("SetIdle = %q, %v; want cpu.shares=2", knob, err)
	}
	c = idleCgroup(t)
	if _, err := c.SetIdle(); err == nil || !strings.Contains(err.Error(), "no cpu controller") {
		t.Fatalf("SetIdle without a cpu controller: %v", err)
	}
}
