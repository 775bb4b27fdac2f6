package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podvm/podvm/internal/hostbed"
)

// ServeRegistry is the cluster's image registry process (`podvm cluster
// serve-registry`): it builds the cluster images, serves them on a free
// port of 127.0.0.1, points containerd's certs.d (hostsDir) at itself, and
// writes its address to addrFile once it is ready. It serves until ctx ends.
func ServeRegistry(ctx context.Context, addrFile, hostsDir, busybox, testbin, agnhost string) error {
	images, err := hostbed.ClusterImages(busybox, testbin, agnhost)
	if err != nil {
		return err
	}
	reg, err := hostbed.ServeImages(images, os.Stderr, hostsDir)
	if err != nil {
		return fmt.Errorf("serve cluster images: %w", err)
	}
	defer reg.Close()
	if err := writeOwnHost(hostsDir, reg.Addr); err != nil {
		return err
	}
	if err := os.WriteFile(addrFile, []byte(reg.Addr+"\n"), 0o644); err != nil {
		return err
	}
	hosts, _ := hostbed.RegistryHosts(hostbed.ImageRefs(images))
	fmt.Fprintf(os.Stderr, "serving %d images on %s for %v\n", len(images), reg.Addr, hosts)
	<-ctx.Done()
	return nil
}

// writeOwnHost lets the cluster pull images pushed to the registry under
// its own address (127.0.0.1:PORT/...), such as podvm deploy's installer
// image: plain HTTP, no other host to fall back to.
func writeOwnHost(hostsDir, addr string) error {
	dir := filepath.Join(hostsDir, addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	text := fmt.Sprintf(`# Written by podvm cluster serve-registry: images pushed to this registry by its own address.
server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, addr)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(text), 0o644)
}
