// Package guestspec rewrites a container's OCI spec, written by containerd
// for the host, into the spec podvm-agent runs inside the guest: the root
// filesystem and every host bind mount move to guest paths of the shared
// directory, and everything else that names a host object (namespace paths,
// host devices, hooks, LSM labels) is dropped or remapped, because inside
// the VM it would mean nothing or, worse, something else.
package guestspec

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// GuestSharedDir is where the agent mounts the sandbox's shared directory.
const GuestSharedDir = "/run/podvm/shared"

// RootfsDir is the container's root filesystem relative to the shared
// directory, the same on host and guest.
func RootfsDir(containerID string) string { return path.Join(containerID, "rootfs") }

// Options say where the container stands in its pod.
type Options struct {
	// Pod is set for containers created through CRI (they carry the
	// container-type annotation). All of a pod's containers share the
	// guest's root network namespace, where the pod's interfaces are.
	Pod bool
	// SandboxGuestPid is the guest pid of the pod's sandbox container; a
	// container that asks to share the pod's IPC, UTS or PID namespace
	// joins that process's. Zero for the sandbox container itself.
	SandboxGuestPid uint32
	// PodCgroup is the pod's guest cgroup (see PodCgroup); a container
	// whose guest cgroup would not be below it is put at PodCgroup/<id>,
	// so that pod-wide limits set on it (pids) hold for every container.
	// Empty for a lone container.
	PodCgroup string
}

// SharedMount is a host path the shim must make visible in the guest by
// bind-mounting it at ShareRel under the sandbox's shared directory.
type SharedMount struct {
	HostSource  string
	ShareRel    string
	Destination string
	ReadOnly    bool
	// ReceiveHostMounts is set for rslave/rshared volumes: mounts made on
	// the host under HostSource later must reach the guest.
	ReceiveHostMounts bool
}

// Result says what the rewrite needs from the host and what it left out.
type Result struct {
	Shares  []SharedMount
	Dropped Dropped
}

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

// guestShm replaces the pod's host /dev/shm (a tmpfs on the host) with one
// made in the guest: shared memory cannot cross the VM boundary anyway.
var guestShm = specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
	Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}

// Rewrite returns a copy of s for container id, leaving s unchanged.
func Rewrite(s *specs.Spec, id string, o Options) (*specs.Spec, Result, error) {
	var res Result
	if s == nil || s.Root == nil {
		return nil, res, fmt.Errorf("OCI spec of container %s has no root", id)
	}
	if s.Process == nil {
		return nil, res, fmt.Errorf("OCI spec of container %s has no process", id)
	}
	if strings.Contains(id, "/") || id == "" || id == "." || id == ".." {
		return nil, res, fmt.Errorf("container id %q cannot name a directory", id)
	}
	g := *s

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
		res.Dropped.Hooks = true
	}

	g.Mounts = nil
	for _, m := range s.Mounts {
		switch {
		case guestMountTypes[m.Type]:
			g.Mounts = append(g.Mounts, m)
		case isBind(m) && m.Destination == "/dev/shm":
			g.Mounts = append(g.Mounts, guestShm)
		case isBind(m):
			rel := path.Join(MountsDir(id), strconv.Itoa(len(res.Shares)))
			res.Shares = append(res.Shares, SharedMount{HostSource: m.Source, ShareRel: rel,
				Destination: m.Destination, ReadOnly: hasOption(m.Options, "ro"),
				ReceiveHostMounts: hasOption(m.Options, "rslave") || hasOption(m.Options, "rshared")})
			gm := m
			gm.Type = "bind"
			gm.Source = path.Join(GuestSharedDir, rel)
			g.Mounts = append(g.Mounts, gm)
		default:
			res.Dropped.Mounts = append(res.Dropped.Mounts, m.Destination)
		}
	}

	if s.Linux != nil {
		l := *s.Linux
		l.MountLabel = ""
		l.Namespaces = nil
		for _, ns := range s.Linux.Namespaces {
			if o.Pod && ns.Type == specs.NetworkNamespace {
				continue // the pod's interfaces live in the guest's root netns
			}
			// A host path (a pod's netns, the pause process's ns) means
			// nothing in the guest; a shared pod namespace is the sandbox
			// container's there.
			hadPath := ns.Path != ""
			ns.Path = ""
			if hadPath && o.SandboxGuestPid != 0 && podShared[ns.Type] {
				ns.Path = fmt.Sprintf("/proc/%d/ns/%s", o.SandboxGuestPid, nsFile[ns.Type])
			}
			l.Namespaces = append(l.Namespaces, ns)
		}
		for _, dev := range s.Linux.Devices {
			res.Dropped.Devices = append(res.Dropped.Devices, dev.Path)
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
		if o.PodCgroup != "" && !strings.HasPrefix(l.CgroupsPath, strings.TrimSuffix(o.PodCgroup, "/")+"/") {
			l.CgroupsPath = path.Join(o.PodCgroup, id)
		}
		g.Linux = &l
	}
	return &g, res, nil
}

// podShared are the namespaces a pod's containers may share with the
// sandbox container, and their names under /proc/<pid>/ns.
var podShared = map[specs.LinuxNamespaceType]bool{specs.IPCNamespace: true, specs.UTSNamespace: true, specs.PIDNamespace: true}

var nsFile = map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.PIDNamespace: "pid"}

// MountsDir holds the container's shared bind mounts, relative to the
// shared directory.
func MountsDir(containerID string) string { return path.Join(containerID, "mounts") }

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// PodCgroup is the guest cgroup a pod's containers are created below: the
// parent of its sandbox container's guest cgroup, which for the kubelet's
// cgroupfs driver is the pod cgroup's own path (/kubepods/<qos>/pod<uid>),
// and /podvm otherwise.
func PodCgroup(sandboxCgroupsPath, sandboxID string) string {
	return path.Dir(path.Clean(guestCgroupsPath(sandboxCgroupsPath, sandboxID)))
}

// guestCgroupsPath keeps a cgroupfs-style path and replaces a systemd-style
// one ("slice:prefix:name"): the guest has no systemd.
func guestCgroupsPath(p, id string) string {
	if p == "" || strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/") {
		return "/podvm/" + id
	}
	return p
}
