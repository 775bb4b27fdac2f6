package childproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// parentEnv makes the test binary the parent of TestParentHelper: it
// starts a sleeper (outliving it if the value is "outlive"), prints the
// sleeper's pid and exits.
const parentEnv = "CHILDPROC_TEST_PARENT"

func TestParentHelper(t *testing.T) {
	mode := os.Getenv(parentEnv)
	if mode == "" {
		t.Skip("run by TestOutliveParent")
	}
	SetOutliveParent(mode == "outlive")
	p, err := Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"60"}, LogPath: filepath.Join(os.TempDir(), "childproc-outlive.log")})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("child=%d\n", p.Pid())
	os.Exit(0) // the parent dies without stopping its child
}

// TestOutliveParent: a child started with SetOutliveParent on runs on
// after its parent's exit; without it the kernel kills it.
func TestOutliveParent(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		alive bool
	}{{"outlive", true}, {"die", false}} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestParentHelper$")
		cmd.Env = append(os.Environ(), parentEnv+"="+tc.mode)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: the parent: %v: %s", tc.mode, err, out)
		}
		var pid int
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "child="); ok {
				pid, _ = strconv.Atoi(v)
			}
		}
		if pid == 0 {
			t.Fatalf("%s: the parent printed no child: %s", tc.mode, out)
		}
		alive := false
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			alive = isSleeper(pid)
			if !alive {
				break
			}
		}
		if alive != tc.alive {
			t.Errorf("%s: the child (pid %d) alive after its parent's exit: %v, want %v", tc.mode, pid, alive, tc.alive)
		}
		if alive {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// isSleeper says whether pid is a running (not zombie) sleep.
func isSleeper(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return strings.Contains(s, "(sleep)") && i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}
