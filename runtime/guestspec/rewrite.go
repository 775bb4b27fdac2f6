// Package guestspec rewrites a container's OCI spec, written by containerd
// for the host, into the spec podvm-agent runs inside the guest: the root
// filesystem moves to the shared directory's guest path, and everything that
// names a host object (namespace paths, host devices, hooks, LSM labels, host
// bind mounts) is dropped, because inside the VM it would mean nothing or,
// worse, something else.
package guestspec

import (
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// GuestSharedDir is where the agent mounts the sandbox's shared directory.
const GuestSharedDir = "/run/podvm/shared"

// RootfsDir is the container's root filesystem relative to the shared
// directory, the same on host and guest.
func RootfsDir(containerID string) string { return path.Join(containerID, "rootfs") }

// Dropped lists what a rewrite removed, so the shim can log it.
type Dropped struct {
	Mounts  []string
	Devices []string
	Hooks   bool
}

// guestMountTypes are filesystems the guest kernel creates itself; a mount of
// one of these types refers to nothing on the host and is kept.
var guestMountTypes = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "shm": true,
}

// Rewrite returns a copy of s for container id, leaving s unchanged.
func Rewrite(s *specs.Spec, id string) (*specs.Spec, Dropped, error) {
	if s == nil || s.Root == nil {
		return nil, Dropped{}, fmt.Errorf("OCI spec of container %s has no root", id)
	}
	if s.Process == nil {
		return nil, Dropped{}, fmt.Errorf("OCI spec of container %s has no process", id)
	}
	if strings.Contains(id, "/") || id == "" || id == "." || id == ".." {
		return nil, Dropped{}, fmt.Errorf("container id %q cannot name a directory", id)
	}
	g := *s
	var d Dropped

	root := *s.Root
	root.Path = path.Join(GuestSharedDir, RootfsDir(id))
	g.Root = &root

	proc := *s.Process
	proc.ApparmorProfile = ""
	proc.SelinuxLabel = ""
	g.Process = &proc

	if s.Hooks != nil {
		// Hooks are host binaries; the guest has none of them.
		g.Hooks = nil
		d.Hooks = true
	}

	g.Mounts = nil
	for _, m := range s.Mounts {
		if guestMountTypes[m.Type] {
			g.Mounts = append(g.Mounts, m)
			continue
		}
		d.Mounts = append(d.Mounts, m.Destination)
	}

	if s.Linux != nil {
		l := *s.Linux
		l.MountLabel = ""
		l.Namespaces = nil
		for _, ns := range s.Linux.Namespaces {
			// A namespace path is a host path (a pod's netns); in the guest a
			// fresh namespace of the same type gives the same isolation.
			ns.Path = ""
			l.Namespaces = append(l.Namespaces, ns)
		}
		for _, dev := range s.Linux.Devices {
			d.Devices = append(d.Devices, dev.Path)
		}
		l.Devices = nil
		if s.Linux.Resources != nil {
			r := *s.Linux.Resources
			// Host block devices, hugepages and RDMA do not exist in the guest.
			r.BlockIO = nil
			r.HugepageLimits = nil
			r.Rdma = nil
			l.Resources = &r
		}
		l.CgroupsPath = guestCgroupsPath(s.Linux.CgroupsPath, id)
		g.Linux = &l
	}
	return &g, d, nil
}

// guestCgroupsPath keeps a cgroupfs-style path and replaces a systemd-style
// one ("slice:prefix:name"): the guest has no systemd.
func guestCgroupsPath(p, id string) string {
	if p == "" || strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/") {
		return "/podvm/" + id
	}
	return p
}
