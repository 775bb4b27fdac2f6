package container

import (
	"context"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/guestspec"
)

// Spec is a container's OCI spec as the guest runs it, with the host paths
// that must be shared into the VM for it.
type Spec struct {
	Guest  *specs.Spec
	Shares []guestspec.SharedMount
}

// RewriteSpec rewrites a container's OCI spec for the guest (paths under
// the share, host-only mounts and devices dropped, cgroup path in the
// guest) and logs what it left out. Its errors are the spec's fault.
func RewriteSpec(ctx context.Context, spec *specs.Spec, id string, opts guestspec.Options) (*Spec, error) {
	guest, rewritten, err := guestspec.Rewrite(spec, id, opts)
	if err != nil {
		return nil, err
	}
	if d := rewritten.Dropped; len(d.Mounts)+len(d.Devices) > 0 || d.Hooks {
		log.G(ctx).WithFields(log.Fields{"container": id, "mounts": d.Mounts, "devices": d.Devices, "hooks": d.Hooks}).
			Warn("host-only parts of the OCI spec are not passed into the pod VM")
	}
	return &Spec{Guest: guest, Shares: rewritten.Shares}, nil
}
