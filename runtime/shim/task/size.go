package task

import (
	"context"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/sandbox"
)

// vmSize sizes the pod's VM from its spec and fits it to this host: more
// vCPUs than the host has are clamped (logged), more memory is refused.
func vmSize(ctx context.Context, spec *specs.Spec, cfg *config.Config) (sandbox.Size, error) {
	size, err := sandbox.SizeFor(spec, cfg.Hypervisor.DefaultVCPUs, cfg.Hypervisor.DefaultMemoryMiB)
	if err != nil {
		return size, err
	}
	host, err := sandbox.ThisHost()
	if err != nil {
		log.G(ctx).WithError(err).Warn("size of this host unknown; the VM's size is not checked against it")
	}
	size, note, err := sandbox.FitHost(size, host)
	if note != "" {
		log.G(ctx).Warn(note)
	}
	return size, err
}
