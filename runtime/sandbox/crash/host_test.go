package crash

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNamesDirByOpenFile: a process that holds the state dir open, with no
// path of it on its command line (a jailed QEMU), counts as the sandbox's;
// one that does neither does not.
func TestNamesDirByOpenFile(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	holder := exec.Command("sleep", "30")
	holder.ExtraFiles = []*os.File{f}
	other := exec.Command("sleep", "30")
	for _, c := range []*exec.Cmd{holder, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Wait()
		defer c.Process.Kill()
	}
	if !namesDir(holder.Process.Pid, state) {
		t.Error("a process holding the state dir open: want it counted as the sandbox's")
	}
	if namesDir(other.Process.Pid, state) {
		t.Error("an unrelated process: counted as the sandbox's")
	}
	if namesDir(holder.Process.Pid, state+"x") {
		t.Error("a sibling directory's name: counted")
	}
}
