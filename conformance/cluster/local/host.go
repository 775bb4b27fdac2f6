package local

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/podvm/podvm/internal/hostbed"
)

// What the cluster changes on the host besides its state directory: a
// bridge, a line in /etc/hosts, iptables chains (CNI portmap, kubelet),
// kubepods cgroups and mounts. Each is recorded by Up and undone by Down;
// the means (bridge, cgroups, chains, mounts) are internal/hostbed's.

// freePrefixes picks n /24s in 10.200-10.254 that overlap no address or
// route of the host.
func freePrefixes(n int) ([]netip.Prefix, error) {
	used, err := hostbed.HostPrefixes()
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

// editHosts rewrites /etc/hosts under the host lock "etc-hosts": clusters
// going up and down at once (tests run them side by side) would otherwise
// lose each other's lines in their read-modify-write.
func editHosts(edit func([]byte) []byte) error {
	release, err := hostbed.LockHost("etc-hosts")
	if err != nil {
		return fmt.Errorf("lock %s: %w", hostsFile, err)
	}
	defer release()
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
var clusterChains = hostbed.Chains{
	Tools:    []string{"iptables", "ip6tables"},
	Tables:   []string{"nat", "filter", "mangle"},
	Prefixes: []string{"CNI-", "KUBE-"},
}

// kubepodsDirs lists the kubepods cgroup below root in every mounted
// cgroup hierarchy.
func kubepodsDirs(root string) []string {
	var out []string
	for _, m := range hostbed.CgroupMounts() {
		out = append(out, filepath.Join(m, root, "kubepods"))
	}
	return out
}
