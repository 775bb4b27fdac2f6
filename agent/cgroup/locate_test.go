package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"testing"
)

// TestLocateAbsoluteIsTheSpecs: an absolute path is the location, whatever
// the pid reads as (here the test's own, which is not the container's).
func TestLocateAbsoluteIsTheSpecs(t *testing.T) {
	want, err := FromPath("/podvm/c1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Locate("/podvm/c1/", os.Getpid())
	if err != nil || got != want {
		t.Fatalf("Locate = %+v, %v; want %+v", got, err, want)
	}
}

// TestLocateRefusesTheAgentsCgroup: a location that holds the agent, by the
// spec's path or by a pid, is refused.
func TestLocateRefusesTheAgentsCgroup(t *testing.T) {
	own, err := OfPid(os.Getpid())
	if err != nil {
		t.Skipf("this host has no cgroup this package understands: %v", err)
	}
	if _, err := Locate("/", os.Getpid()); err == nil {
		t.Error("the root cgroup, which holds the agent, accepted")
	}
	if own.Path == "/" {
		t.Skip("the test runs in the root cgroup: no cgroup of its own to name")
	}
	if c, err := Locate(own.Path, 1); err == nil {
		t.Errorf("the agent's own cgroup %s accepted from the spec: %+v", own.Path, c)
	}
	if c, err := Locate(path.Base(own.Path), os.Getpid()); err == nil {
		t.Errorf("the agent's own cgroup %s accepted from its pid: %+v", own.Path, c)
	}
}

func TestLocateRefusesAClimbingPath(t *testing.T) {
	if c, err := Locate("../c1", os.Getpid()); err == nil {
		t.Errorf("a relative path with .. accepted: %+v", c)
	}
}

// TestLocateRelative runs a process in a cgroup below the test's own, where
// runc's cgroupfs driver puts a container with a relative path on cgroup v1,
// and locates it through that process.
func TestLocateRelative(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a cgroup")
	}
	own, err := OfPid(os.Getpid())
	if err != nil {
		t.Skipf("this host has no cgroup this package understands: %v", err)
	}
	rel := fmt.Sprintf("podvm-locate-test-%d", os.Getpid())
	want := Cgroup{V2: own.V2, Root: own.Root, Path: path.Join(own.Path, rel)}
	if err := os.Mkdir(want.Dir(), 0o755); err != nil {
		t.Skipf("cannot create a cgroup below the test's own: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(want.Dir()) })
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := os.WriteFile(filepath.Join(want.Dir(), "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Skipf("cannot move a process into %s: %v", want.Dir(), err)
	}
	got, err := Locate(rel, cmd.Process.Pid)
	if err != nil || got != want {
		t.Fatalf("Locate(%q) = %+v, %v; want %+v", rel, got, err, want)
	}
	if c, err := Locate("other", cmd.Process.Pid); err == nil {
		t.Errorf("a pid in %s accepted for the relative path \"other\": %+v", rel, c)
	}
}

func TestContains(t *testing.T) {
	v1 := func(p string) Cgroup { return Cgroup{Root: "/sys/fs/cgroup/memory", Path: p} }
	for _, tc := range []struct {
		c, d Cgroup
		want bool
	}{
		{v1("/"), v1("/a/b"), true},
		{v1("/a"), v1("/a"), true},
		{v1("/a"), v1("/a/b"), true},
		{v1("/a"), v1("/ab"), false},
		{v1("/a/b"), v1("/a"), false},
		{v1("/a"), Cgroup{V2: true, Root: Mountpoint, Path: "/a"}, false},
	} {
		if got := tc.c.contains(tc.d); got != tc.want {
			t.Errorf("%s contains %s = %v, want %v", tc.c, tc.d, got, tc.want)
		}
	}
}
