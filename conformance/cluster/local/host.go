package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/ci/testbed"
)

// What the cluster changes on the host besides its state directory: a
// bridge, a line in /etc/hosts, iptables chains (CNI portmap, kubelet),
// kubepods cgroups and mounts. Each is recorded by Up and undone by Down.

// freePrefixes picks n /24s in 10.200-10.254 that overlap no address or
// route of the host.
func freePrefixes(n int) ([]netip.Prefix, error) {
	used, err := testbed.HostPrefixes()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for b := 200; b < 255 && len(out) < n; b++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) && u.Bits() > 0 {
				free = false
				break
			}
		}
		if free {
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, errors.New("no free /24 in 10.200.0.0-10.254.0.0 for the pod and service networks")
	}
	return out, nil
}

func createBridge(name string, addr netip.Addr, bits int) error {
	if l, err := netlink.LinkByName(name); err == nil {
		// Left by a cluster whose Down never ran.
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete stale bridge %s: %w", name, err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	ipnet := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("add %s to bridge %s: %w", ipnet, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge %s up: %w", name, err)
	}
	return nil
}

func deleteBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil // gone already
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

const hostsFile = "/etc/hosts"

// addHostsLine maps the node name to its address: the kubelet and the
// apiserver look the node up by name, and an unknown name would go to the
// host's DNS server, which must not be contacted.
func addHostsLine(line string) error {
	return editHosts(func(b []byte) []byte {
		for _, l := range strings.Split(string(b), "\n") {
			if l == line {
				return b
			}
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		return append(b, line+"\n"...)
	})
}

func removeHostsLine(line string) error {
	if line == "" {
		return nil
	}
	return editHosts(func(b []byte) []byte {
		var kept []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != line {
				kept = append(kept, l)
			}
		}
		return []byte(strings.Join(kept, "\n"))
	})
}

// hostsLock serialises podvm's edits of /etc/hosts: clusters going up and
// down at once (tests run them side by side) would otherwise lose each
// other's lines in their read-modify-write.
const hostsLock = "/run/lock/podvm-etc-hosts.lock"

func editHosts(edit func([]byte) []byte) error {
	if err := os.MkdirAll(filepath.Dir(hostsLock), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(hostsLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock %s: %w", hostsFile, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", hostsFile, err)
	}
	b, err := os.ReadFile(hostsFile)
	if err != nil {
		return err
	}
	out := edit(b)
	if bytes.Equal(out, b) {
		return nil
	}
	return writeInPlace(hostsFile, out)
}

// writeInPlace rewrites a file without replacing its inode: /etc/hosts is
// often a bind mount, which a rename would fail on.
func writeInPlace(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// clusterChains are the iptables chains the cluster's CNI plugins
// (portmap) and kubelet add: Up records what exists, Down removes the rest.
var clusterChains = testbed.Chains{
	Tools:    []string{"iptables", "ip6tables"},
	Tables:   []string{"nat", "filter", "mangle"},
	Prefixes: []string{"CNI-", "KUBE-"},
}

// cgroupMounts lists the mount point of every cgroup hierarchy.
func cgroupMounts() []string {
	var out []string
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				out = append(out, fields[4])
			}
		}
	}
	return out
}

// createCgroupRoot makes root in every hierarchy where it is missing (the
// kubelet refuses a cgroupRoot that does not exist) and returns what it
// created. A new cpuset cgroup starts with no CPUs: it gets its parent's.
func createCgroupRoot(root string) ([]string, error) {
	if root == "/" || root == "" {
		return nil, nil
	}
	var created []string
	for _, m := range cgroupMounts() {
		dir := filepath.Join(m, root)
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return created, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		created = append(created, dir)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return created, fmt.Errorf("set %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return created, nil
}

// kubepodsDirs lists the kubepods cgroup below root in every mounted
// cgroup hierarchy.
func kubepodsDirs(root string) []string {
	var out []string
	for _, m := range cgroupMounts() {
		out = append(out, filepath.Join(m, root, "kubepods"))
	}
	return out
}

// removeCgroupTree removes a cgroup and its children, deepest first. A
// cgroup that still holds processes cannot be removed: that is an error.
func removeCgroupTree(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	out := testbed.MountsUnder(dir)
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unmountAll(dir string) []string {
	var failed []string
	for _, mp := range mountsUnder(dir) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			failed = append(failed, fmt.Sprintf("%s: %v", mp, err))
		}
	}
	return failed
}
