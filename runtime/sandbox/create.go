package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// Create makes the sandbox in three phases: prepare the host (state
// directory, share, network, cgroup), boot the VM, initialize the guest
// (agent connection, sandbox and network in the guest). On error nothing
// is left. First it sweeps away the state directories that crashed shims
// left on this host (crash.Sweep).
func Create(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	s, err := claim(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.Destroy(context.WithoutCancel(ctx))
		}
	}()
	pidsLimit, err := s.prepareHost(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := s.bootVM(ctx, o.Driver, o.Config, s.vmConfig(o)); err != nil {
		return nil, err
	}
	if err := s.initGuest(ctx, o, pidsLimit); err != nil {
		return nil, err
	}
	s.Timings.Ready = time.Now()
	return s, nil
}

// claim makes the sandbox's state directory, taking it over from a
// crashed shim if one left it, and holds its lock.
func claim(ctx context.Context, o Options) (*Sandbox, error) {
	if strings.Contains(o.ID, "/") || o.ID == "" || o.ID == "." || o.ID == ".." {
		return nil, fmt.Errorf("sandbox id %q cannot name a directory", o.ID)
	}
	s := &Sandbox{ID: o.ID, StateDir: StateDir(o.Config, o.ID), Size: o.Size, rootfs: map[string]bool{}, done: make(chan struct{})}
	s.Timings.Begin = time.Now()
	s.share = share.At(s.StateDir)
	root := filepath.Dir(s.StateDir)
	crash.Sweep(ctx, root)
	if err := crash.Claim(ctx, s.StateDir); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	if err := os.Mkdir(s.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state dir: %w", err)
	}
	lock, err := crash.LockNew(s.StateDir)
	if err != nil {
		os.RemoveAll(s.StateDir)
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	s.lock = lock
	return s, nil
}
