package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/hostcgroup"
	"github.com/podvm/podvm/runtime/network"
	"github.com/podvm/podvm/runtime/sandbox/crash"
)

// prepareHost sets up what the VM is handed on the host: the share, the
// taps in the pod's network namespace and the host cgroup. It returns the
// pod's pids limit (nil: none). Each is recorded for package crash before
// or as it is made.
func (s *Sandbox) prepareHost(ctx context.Context, o Options) (pidsLimit *int64, err error) {
	if err := s.share.SetUp(); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	if o.NetNS != "" {
		nw, err := network.Setup(o.NetNS)
		if err != nil {
			return nil, fmt.Errorf("pod network of sandbox %s: %w", o.ID, err)
		}
		s.net = nw
		if err := crash.NoteNetNS(s.StateDir, o.NetNS); err != nil {
			return nil, err
		}
	}
	if o.HostCgroup != "" {
		n, limited, err := s.setUpCgroup(ctx, o.HostCgroup)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
		}
		if limited {
			pidsLimit = &n
		}
	}
	return pidsLimit, nil
}

// setUpCgroup creates the sandbox's host cgroup and reads the pod's pids
// limit from its parent (0, false when there is none).
func (s *Sandbox) setUpCgroup(ctx context.Context, path string) (pidsLimit int64, limited bool, err error) {
	if err := crash.NoteCgroup(s.StateDir, path); err != nil {
		return 0, false, err
	}
	cg, err := hostcgroup.Create(path)
	if err != nil {
		return 0, false, err
	}
	s.cgroup = cg
	pod := hostcgroup.Parent(path)
	pidsLimit, limited, err = hostcgroup.PidsMax(pod)
	if err != nil {
		return 0, false, fmt.Errorf("pids limit of pod cgroup %s: %w", pod, err)
	}
	fields := log.Fields{"sandbox": s.ID, "host_cgroup": path}
	if limited {
		fields["pod_pids_limit"] = pidsLimit
	}
	log.G(ctx).WithFields(fields).Info("pod VM processes go into the pod's host cgroup")
	return pidsLimit, limited, nil
}
