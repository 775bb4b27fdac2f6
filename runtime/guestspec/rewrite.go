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
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api/contract"
)

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
	// Submounts lists the host mounts below a bind mount's source (see
	// Submount). When set, each is shared and mounted on its own; when
	// nil, a volume is shared with everything below it (one recursive
	// bind on the host, which the guest sees as virtio-fs submounts).
	Submounts func(hostSource string) ([]Submount, error)
}

// Submount is a mount on the host below a bind mount's source, as a
// recursive bind would copy it.
type Submount struct {
	// Rel is its mount point relative to the source: clean, relative and
	// inside it ("tmpfs", "a/b").
	Rel string
	// Options are the host mount's own ro, nosuid, nodev and noexec.
	Options []string
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
	// Alone: bind HostSource without the mounts below it; those that the
	// container should see are shares of their own (Options.Submounts).
	Alone bool
	// Under, set for a submount, is the source of the volume it is below:
	// the path from there to HostSource runs through directories the
	// guest may write, so the shim resolves it without following symlinks.
	Under string
	// UIDMappings and GIDMappings, when set, make the host side of the
	// share an idmapped mount (a user namespace pod's volume): the guest's
	// virtio-fs cannot be idmapped, so the shim maps on the host and the
	// guest mounts the share as it is, with the ids already shifted.
	UIDMappings []specs.LinuxIDMapping
	GIDMappings []specs.LinuxIDMapping
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
	if err := checkSpec(s, id); err != nil {
		return nil, res, err
	}
	g := *s

	root := *s.Root
	root.Path = path.Join(contract.GuestSharedDir, RootfsDir(id))
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

	if err := rewriteMounts(&g, &res, s, id, o); err != nil {
		return nil, res, err
	}
	if s.Linux != nil {
		g.Linux = rewriteLinux(s.Linux, &res, id, o)
		if needsCgroupNamespace(s) {
			g.Linux.Namespaces = append(g.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		}
	}
	return &g, res, nil
}

// annotationContainerType is the annotation containerd's CRI sets on every
// container it creates: "sandbox" for the pause container, "container"
// for the pod's others.
const annotationContainerType = "io.kubernetes.cri.container-type"

// needsCgroupNamespace says whether the guest spec must add a private
// cgroup namespace that s lacks. containerd's CRI gives one to every
// container that is neither privileged nor a sandbox container, on a
// cgroup v2 node only. The guest is always cgroup v2, so a CRI container
// gets it whatever the host runs: it then sees its own cgroup at the
// root of /sys/fs/cgroup, which runc mounts as cgroup2 from inside the
// namespace.
func needsCgroupNamespace(s *specs.Spec) bool {
	if s.Annotations[annotationContainerType] != "container" || privileged(s) {
		return false
	}
	return !slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.CgroupNamespace })
}

// privileged tells a privileged CRI container, of which the spec says
// nothing directly, by what containerd gives it alone: a read-write
// /sys/fs/cgroup (its cgroup mount is read-only otherwise), or, where the
// spec has no cgroup mount (a volume over /sys/fs/cgroup), a first device
// rule that allows every device.
func privileged(s *specs.Spec) bool {
	for _, m := range s.Mounts {
		if m.Type == "cgroup" || m.Type == "cgroup2" {
			return !hasOption(m.Options, "ro")
		}
	}
	if s.Linux.Resources == nil || len(s.Linux.Resources.Devices) == 0 {
		return false
	}
	d := s.Linux.Resources.Devices[0]
	return d.Allow && (d.Type == "" || d.Type == "a") && d.Major == nil && d.Minor == nil && d.Access == "rwm"
}

// checkSpec refuses a spec the rewrite cannot place in the guest.
func checkSpec(s *specs.Spec, id string) error {
	if s == nil || s.Root == nil {
		return fmt.Errorf("OCI spec of container %s has no root", id)
	}
	if s.Process == nil {
		return fmt.Errorf("OCI spec of container %s has no process", id)
	}
	if strings.Contains(id, "/") || id == "" || id == "." || id == ".." {
		return fmt.Errorf("container id %q cannot name a directory", id)
	}
	return nil
}

// rewriteMounts sets g's mounts from s's: guest filesystems kept, binds
// moved to shares, everything else dropped (and listed in res).
func rewriteMounts(g *specs.Spec, res *Result, s *specs.Spec, id string, o Options) error {
	g.Mounts = nil
	inUserNS := s.Linux != nil && slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace })
	for _, m := range s.Mounts {
		switch {
		case m.Type == "sysfs" && o.Pod && inUserNS:
			// A pod's containers stay in the guest's root network
			// namespace, which belongs to the guest's initial user
			// namespace, and the kernel lets only an owner of the
			// network namespace mount sysfs. So a user namespace pod
			// gets the guest's /sys bound read-only, as runc does on a
			// host for a user namespace container without a network
			// namespace of its own. It is the VM's /sys, not the node's.
			g.Mounts = append(g.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: "/sys",
				Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}})
		case guestMountTypes[m.Type]:
			g.Mounts = append(g.Mounts, m)
		case isBind(m) && m.Destination == "/dev/shm":
			g.Mounts = append(g.Mounts, guestShm)
		case isBind(m):
			if err := shareBind(g, res, id, m, o); err != nil {
				return err
			}
		default:
			res.Dropped.Mounts = append(res.Dropped.Mounts, m.Destination)
		}
	}
	return nil
}

// rewriteLinux is a copy of linux for the guest: namespaces without host
// paths (a pod's shared ones are the sandbox container's), no host devices
// or host-only resources, and a guest cgroup path.
func rewriteLinux(linux *specs.Linux, res *Result, id string, o Options) *specs.Linux {
	l := *linux
	l.MountLabel = ""
	l.Namespaces = nil
	for _, ns := range linux.Namespaces {
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
	for _, dev := range linux.Devices {
		res.Dropped.Devices = append(res.Dropped.Devices, dev.Path)
	}
	l.Devices = nil
	if linux.Resources != nil {
		r := *linux.Resources
		// Host block devices, hugepages and RDMA do not exist in the guest.
		r.BlockIO = nil
		r.HugepageLimits = nil
		r.Rdma = nil
		l.Resources = &r
	}
	l.CgroupsPath = guestCgroupsPath(linux.CgroupsPath, id)
	if o.PodCgroup != "" && !strings.HasPrefix(l.CgroupsPath, strings.TrimSuffix(o.PodCgroup, "/")+"/") {
		l.CgroupsPath = path.Join(o.PodCgroup, id)
	}
	return &l
}

// shareBind adds the share of one host bind mount to res and its guest
// mount to g, followed by those of its submounts.
//
// A recursive bind's submounts are shared one by one (when o.Submounts
// says what they are) rather than with one recursive bind on the host,
// for two reasons. In the guest, virtio-fs would present each as an
// automount made on first access, after runc set the container's mount
// flags: it would take the read-only flag of the volume's top mount
// although a non-recursive "ro" leaves submounts as they are. And on
// the host, the shim's recursive copy would sit, in the host's mount
// namespace, on the same directory as the original submount, so that
// directory could not be removed (EBUSY) while the container runs; with
// runc the copy is in the container's namespace, which does not block
// it. As entries of their own, runc mounts them with the flags runc on
// the host would give them: "rro" for all, else each host mount's own.
func shareBind(g *specs.Spec, res *Result, id string, m specs.Mount, o Options) error {
	rro := hasOption(m.Options, "rro")
	sh := SharedMount{HostSource: m.Source, Destination: m.Destination,
		ReadOnly:          hasOption(m.Options, "ro") || rro,
		ReceiveHostMounts: hasOption(m.Options, "rslave") || hasOption(m.Options, "rshared")}
	var subs []Submount
	if !sh.ReceiveHostMounts && o.Submounts != nil {
		// A volume that receives host mounts keeps its recursive bind:
		// mounts made later on the host reach the guest through it.
		sh.Alone = true
		if hasOption(m.Options, "rbind") {
			var err error
			if subs, err = o.Submounts(m.Source); err != nil {
				return fmt.Errorf("mounts below %s (for %s): %w", m.Source, m.Destination, err)
			}
		}
	}
	gm := m
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		sh.UIDMappings, sh.GIDMappings = m.UIDMappings, m.GIDMappings
		gm.UIDMappings, gm.GIDMappings = nil, nil
		gm.Options = withoutOptions(m.Options, "idmap", "ridmap")
	}
	gm.Type = "bind"
	gm.Source = addShare(res, id, sh)
	g.Mounts = append(g.Mounts, gm)

	for _, sub := range subs {
		if sub.Rel == "" || path.IsAbs(sub.Rel) || path.Clean(sub.Rel) != sub.Rel || sub.Rel == ".." || strings.HasPrefix(sub.Rel, "../") {
			return fmt.Errorf("mount below %s: %q is not a path inside it", m.Source, sub.Rel)
		}
		ssh := SharedMount{HostSource: path.Join(m.Source, sub.Rel), Destination: path.Join(m.Destination, sub.Rel),
			ReadOnly: rro || hasOption(sub.Options, "ro"), Alone: true, Under: m.Source,
			UIDMappings: sh.UIDMappings, GIDMappings: sh.GIDMappings}
		g.Mounts = append(g.Mounts, specs.Mount{Destination: ssh.Destination, Type: "bind",
			Source: addShare(res, id, ssh), Options: SubmountOptions(m.Options, sub.Options)})
	}
	return nil
}

// addShare records sh at the next free place in the container's mounts
// directory and returns its guest path.
func addShare(res *Result, id string, sh SharedMount) string {
	sh.ShareRel = path.Join(MountsDir(id), strconv.Itoa(len(res.Shares)))
	res.Shares = append(res.Shares, sh)
	return path.Join(contract.GuestSharedDir, sh.ShareRel)
}

// recursiveOptions are the options of a bind mount that apply to its
// submounts too, with runc as on the host: recursive mount attributes
// and propagation.
var recursiveOptions = map[string]bool{
	"rro": true, "rrw": true, "rnosuid": true, "rsuid": true, "rnodev": true, "rdev": true,
	"rnoexec": true, "rexec": true, "rnodiratime": true, "rdiratime": true, "rrelatime": true,
	"rnorelatime": true, "rnoatime": true, "ratime": true, "rstrictatime": true,
	"rnostrictatime": true, "rnosymfollow": true, "rsymfollow": true,
	"private": true, "rprivate": true, "slave": true, "rslave": true, "shared": true,
	"rshared": true, "unbindable": true, "runbindable": true,
}

// SubmountOptions are the guest mount options of a submount of a bind mount
// with options parent, whose own host options are host: a bind carrying
// the parent's recursive options ("rro" among them), read-only if the host
// mount is, and the host mount's nosuid, nodev and noexec.
func SubmountOptions(parent, host []string) []string {
	out := []string{"rbind"}
	for _, o := range parent {
		if recursiveOptions[o] {
			out = append(out, o)
		}
	}
	switch {
	case hasOption(host, "ro"):
		out = append(out, "ro")
	case !hasOption(parent, "rro"):
		out = append(out, "rw")
	}
	for _, o := range []string{"nosuid", "nodev", "noexec"} {
		if hasOption(host, o) {
			out = append(out, o)
		}
	}
	return out
}

// podShared are the namespaces a pod's containers may share with the
// sandbox container, and their names under /proc/<pid>/ns.
var podShared = map[specs.LinuxNamespaceType]bool{specs.IPCNamespace: true, specs.UTSNamespace: true, specs.PIDNamespace: true, specs.UserNamespace: true}

var nsFile = map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.PIDNamespace: "pid", specs.UserNamespace: "user"}

// MountsDir holds the container's shared bind mounts, relative to the
// shared directory.
func MountsDir(containerID string) string { return path.Join(containerID, "mounts") }

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")
}

func hasOption(opts []string, o string) bool { return slices.Contains(opts, o) }

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

// withoutOptions returns opts less every occurrence of drop.
func withoutOptions(opts []string, drop ...string) []string {
	var out []string
	for _, o := range opts {
		if !slices.Contains(drop, o) {
			out = append(out, o)
		}
	}
	return out
}
