package local

import (
	"context"
	"fmt"
	"os"

	"github.com/podvm/podvm/runtime/integration/testregistry"
)

// ServeRegistry is the cluster's image registry process (`podvm cluster
// serve-registry`): it builds the cluster images, serves them on a free
// port of 127.0.0.1, points containerd's certs.d (hostsDir) at itself, and
// writes its address to addrFile once it is ready. It serves until ctx ends.
func ServeRegistry(ctx context.Context, addrFile, hostsDir, busybox, testbin, agnhost string) error {
	images, err := testregistry.ClusterImages(busybox, testbin, agnhost)
	if err != nil {
		return err
	}
	reg, err := testregistry.Start(os.Stderr)
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := reg.PushAll(images); err != nil {
		return fmt.Errorf("push cluster images: %w", err)
	}
	hosts, err := testregistry.Hosts(testregistry.Refs(images))
	if err != nil {
		return err
	}
	if err := reg.WriteHostsDir(hostsDir, hosts); err != nil {
		return err
	}
	if err := os.WriteFile(addrFile, []byte(reg.Addr+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "serving %d images on %s for %v\n", len(images), reg.Addr, hosts)
	<-ctx.Done()
	return nil
}
