package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// What the cluster changes on the host besides its state directory: a
// bridge, a line in /etc/hosts, iptables chains (CNI portmap, kubelet),
// kubepods cgroups and mounts. Each is recorded by Up and undone by Down.

// freePrefixes picks n /24s in 10.200-10.254 that overlap no address or
// route of the host.
func freePrefixes(n int) ([]netip.Prefix, error) {
	used, err := hostPrefixes()
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

func hostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := netipPrefix(a.IPNet); ok {
			out = append(out, p.Masked())
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if p, ok := netipPrefix(r.Dst); ok {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits), true
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

// iptables: the tables and families the cluster's CNI plugins and kubelet
// add chains to, and the chain prefixes that are theirs.
var (
	iptablesTools  = []string{"iptables", "ip6tables"}
	iptablesTables = []string{"nat", "filter", "mangle"}
	ourChainPrefix = []string{"CNI-", "KUBE-"}
)

func iptablesRules(tool, table string) ([][]string, error) {
	b, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s -S: %w", tool, table, err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			out = append(out, strings.Fields(line))
		}
	}
	return out, nil
}

// iptablesChains names every chain ("tool/table/CHAIN").
func iptablesChains() map[string]bool {
	out := map[string]bool{}
	for _, tool := range iptablesTools {
		for _, table := range iptablesTables {
			rules, err := iptablesRules(tool, table)
			if err != nil {
				continue
			}
			for _, r := range rules {
				if len(r) == 2 && r[0] == "-N" {
					out[tool+"/"+table+"/"+r[1]] = true
				}
			}
		}
	}
	return out
}

// removeNewChains deletes the CNI-* and KUBE-* chains not in before, after
// deleting every rule that jumps to them; it returns what it removed.
func removeNewChains(before map[string]bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, tool := range iptablesTools {
		for _, table := range iptablesTables {
			rules, err := iptablesRules(tool, table)
			if err != nil {
				continue
			}
			isNew := map[string]bool{}
			for _, r := range rules {
				if len(r) == 2 && r[0] == "-N" && hasOurPrefix(r[1]) && !before[tool+"/"+table+"/"+r[1]] {
					isNew[r[1]] = true
				}
			}
			if len(isNew) == 0 {
				continue
			}
			for _, r := range rules {
				if len(r) > 2 && r[0] == "-A" && isNew[jumpTarget(r)] && !isNew[r[1]] {
					args := append([]string{"-w", "-t", table, "-D"}, r[1:]...)
					if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, out))
					}
				}
			}
			names := make([]string, 0, len(isNew))
			for c := range isNew {
				names = append(names, c)
			}
			sort.Strings(names)
			for _, c := range names {
				exec.Command(tool, "-w", "-t", table, "-F", c).Run()
			}
			for _, c := range names {
				if out, err := exec.Command(tool, "-w", "-t", table, "-X", c).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("%s -t %s -X %s: %v: %s", tool, table, c, err, out))
					continue
				}
				removed = append(removed, tool+"/"+table+"/"+c)
			}
		}
	}
	return removed, errors.Join(errs...)
}

func hasOurPrefix(chain string) bool {
	for _, p := range ourChainPrefix {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

func jumpTarget(rule []string) string {
	for i := 0; i+1 < len(rule); i++ {
		if rule[i] == "-j" || rule[i] == "-g" {
			return rule[i+1]
		}
	}
	return ""
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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			mp := unescapeMount(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				out = append(out, mp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
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
