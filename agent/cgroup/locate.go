package cgroup

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
)

// Locate returns the cgroup an OCI runtime made for a container from the
// cgroupsPath p of its spec; pid is the container's init as the runtime's
// create reported it.
//
// An absolute p is the answer: runc's and crun's cgroupfs drivers use that
// path in every hierarchy, and the spec is written by the host and the
// agent, never by the workload. pid is not read then, because where a pid
// is now is not always the container's cgroup: on cgroup v1 an init that is
// exiting or a zombie reads as the hierarchy's root, "/", and a reused pid
// reads as another process's cgroup (docs/agent.md, "The kill that reached
// the test runner").
//
// A relative p is relative to the runtime's own cgroup, which the agent does
// not model; only then is the init's cgroup read, and it is taken only if it
// ends with p.
//
// Either way, a cgroup that holds the agent is refused: a container's never
// does, and killing what is left in it would kill the agent's neighbours.
func Locate(p string, pid int) (Cgroup, error) {
	var (
		c   Cgroup
		err error
	)
	if path.IsAbs(p) {
		c, err = FromPath(p)
	} else {
		c, err = ofInit(p, pid)
	}
	if err != nil {
		return Cgroup{}, err
	}
	own, err := OfPid(os.Getpid())
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup %s: the agent's own: %w", c, err)
	}
	if c.contains(own) {
		return Cgroup{}, fmt.Errorf("cgroup %s holds the agent (in %s), so it is not a container's", c, own.Path)
	}
	return c, nil
}

// ofInit reads the cgroup of the init pid of a container whose spec has the
// relative cgroupsPath rel, and checks that it is rel's.
func ofInit(rel string, pid int) (Cgroup, error) {
	if slices.Contains(strings.Split(rel, "/"), "..") {
		return Cgroup{}, fmt.Errorf("cgroup path %q climbs out of the runtime's cgroup", rel)
	}
	c, err := OfPid(pid)
	if err != nil {
		return Cgroup{}, err
	}
	if !strings.HasSuffix(c.Path, path.Clean("/"+rel)) {
		return Cgroup{}, fmt.Errorf("init pid %d is in cgroup %s, which does not end with the spec's %q: the init exited, or the pid is another process's", pid, c, rel)
	}
	return c, nil
}

// contains reports whether d is c or below it, in the same hierarchy.
func (c Cgroup) contains(d Cgroup) bool {
	if c.V2 != d.V2 || c.Root != d.Root {
		return false
	}
	return c.Path == "/" || d.Path == c.Path || strings.HasPrefix(d.Path, c.Path+"/")
}
