package hostbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// CNIConfig is a pod network of Debian's CNI plugins on a Linux bridge
// that already holds the gateway address: bridge with host-local
// addresses, and portmap for host ports when Portmap is set. Pods reach
// each other and the host; there is no masquerading, so nothing they send
// leaves the host.
type CNIConfig struct {
	// Name is the CNI network name; the file is 10-<Name>.conflist.
	Name    string
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	// IPAMDir is host-local's dataDir, where leases are kept.
	IPAMDir string
	// Portmap adds the portmap plugin (host ports, including
	// 127.0.0.1:port, whose default snat makes loopback traffic reach the
	// pod). It adds iptables chains that CNI DEL never removes: see Chains.
	Portmap bool
}

// FileName is the conflist's name in the CNI conf_dir.
func (c CNIConfig) FileName() string { return "10-" + c.Name + ".conflist" }

// Render is the conflist's JSON.
func (c CNIConfig) Render() ([]byte, error) {
	plugins := []any{
		map[string]any{
			"type": "bridge", "bridge": c.Bridge,
			// The bridge already holds the gateway address; isGateway
			// would also turn on the host's IP forwarding.
			"isGateway": false, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": c.Subnet.String(), "gateway": c.Gateway.String()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0", "gw": c.Gateway.String()}},
				"dataDir": c.IPAMDir,
			},
		},
	}
	if c.Portmap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}})
	}
	b, err := json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": c.Name, "plugins": plugins}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("CNI config %s: %w", c.Name, err)
	}
	return b, nil
}

// Write renders the conflist into confDir (created if needed) and returns
// its path.
func (c CNIConfig) Write(confDir string) (string, error) {
	b, err := c.Render()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(confDir, c.FileName())
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// CNICacheDir is libcni's default result cache, which containerd does not
// let us move.
const CNICacheDir = "/var/lib/cni"

// CNILeaks lists what pods left on network c: interfaces still on its
// bridge, addresses still leased, CNI results still cached.
func CNILeaks(c CNIConfig) []string {
	var out []string
	ports, _ := os.ReadDir(filepath.Join("/sys/class/net", c.Bridge, "brif"))
	for _, p := range ports {
		out = append(out, "interface on bridge "+c.Bridge+": "+p.Name())
	}
	leases, _ := os.ReadDir(filepath.Join(c.IPAMDir, c.Name))
	for _, l := range leases {
		if _, err := netip.ParseAddr(l.Name()); err == nil {
			out = append(out, "host-local lease: "+l.Name())
		}
	}
	for _, r := range cniResults(c.Name) {
		out = append(out, "CNI result cache: "+r)
	}
	return out
}

// cniResults are libcni's cached results of network name's attachments.
func cniResults(name string) []string {
	results, _ := filepath.Glob(filepath.Join(CNICacheDir, "results", name+"-*"))
	return results
}

// RemoveCNIResults removes the cached results of network name's
// attachments, which pods that were never torn down (their shim killed)
// leave behind, and returns the paths it removed.
func RemoveCNIResults(name string) ([]string, error) {
	var removed []string
	var errs []error
	for _, r := range cniResults(name) {
		if err := os.Remove(r); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, r)
	}
	return removed, errors.Join(errs...)
}
