package task

import (
	"context"
	"fmt"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/sandbox"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/shim/container"
)

// Delete removes a stopped (or never started) process; deleting the init
// removes the container, and deleting the container that booted the VM
// stops the VM.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	begin := time.Now()
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if status, _, _ := p.State(); status == task.Status_RUNNING {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "process %s of container %s is still running; kill it first", r.ExecID, r.ID)
	}
	if r.ExecID != "" {
		c.DeleteExec(ctx, p)
		return s.deleteResponse(p), nil
	}
	defer s.deleteInProgress()()
	removed := s.deleteContainer(ctx, c)
	resp := s.deleteResponse(p)
	s.send(&eventstypes.TaskDelete{ContainerID: r.ID, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt})
	log.G(ctx).WithFields(log.Fields{
		"container": r.ID, "host_delete_begin_ns": begin.UnixNano(),
		"host_container_removed_ns": removed.UnixNano(), "host_delete_answered_ns": time.Now().UnixNano(),
	}).Info("container deleted from the pod VM")
	return resp, nil
}

// deleteInProgress counts a container Delete for Shutdown until the
// returned function is called.
func (s *Service) deleteInProgress() (done func()) {
	s.mu.Lock()
	s.deleting++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.deleting--
		s.mu.Unlock()
	}
}

// deleteContainer removes c from the VM and from the shim, and destroys
// the VM with its owner; it returns when c was out of the VM and the shim.
// When the owner is the VM's last container (a lone container, or CRI's
// sandbox container, which CRI deletes last) nobody waits for the VM's
// end but Shutdown: the Delete answers with the exit status once the
// container is out of the host side, and the VM is destroyed meanwhile
// (destroyIdleVM). An owner deleted before the others (not CRI's order)
// destroys the VM before the answer and reports the others exited.
func (s *Service) deleteContainer(ctx context.Context, c *container.Container) (removed time.Time) {
	sb := s.sandbox()
	last := c.Owner && s.containers.Len() == 1
	if last {
		// Its guest runc delete is skipped: the VM is destroyed next.
		c.Detach(ctx)
	} else {
		c.Delete(ctx)
	}
	if init := c.Init(); init.SetExited(container.ExitStatusUnknown, time.Now()) {
		// Deleted before it ever ran: still report a (synthetic) exit.
		s.sendExit(init)
	}
	s.forget(c.ID)
	removed = time.Now()
	switch {
	case last:
		s.destroyIdleVM(sb, c.Bundle)
		return removed
	case c.Owner:
		if err := sb.Destroy(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("destroy pod VM")
		}
		// Anything still here lost its VM just now and must not stay
		// "running" forever.
		s.exitAll(s.containers.All())
	}
	crash.RemoveRecord(c.Bundle)
	return removed
}

// destroyIdleVM destroys the VM of the last container, deleted just now,
// in the background (sandbox.DestroyIdle), then removes the owner's record
// from bundle; Shutdown waits for both (s.vmGone). The record stays until
// the VM is gone, so that a shim that dies meanwhile is cleaned up by
// containerd's `shim delete`, or else by the next shim's crash.Sweep.
func (s *Service) destroyIdleVM(sb *sandbox.Sandbox, bundle string) {
	gone := make(chan struct{})
	s.mu.Lock()
	s.vmGone = gone
	s.mu.Unlock()
	go func() {
		defer close(gone)
		ctx := context.WithoutCancel(s.ctx)
		if err := sb.DestroyIdle(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("destroy pod VM")
		}
		crash.RemoveRecord(bundle)
	}()
}

// forget drops what the shim knows of a deleted container.
// Both under s.mu, as sendOOM checks and marks under it.
func (s *Service) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.containers.Remove(id)
	delete(s.oomReported, id)
	s.mem.forget(id)
}

func (s *Service) deleteResponse(p *container.Process) *taskAPI.DeleteResponse {
	_, status, at := p.State()
	return &taskAPI.DeleteResponse{Pid: s.hostPid(), ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}
}

// Shutdown ends the shim once it serves no container and deletes none:
// containerd calls it again after each Delete it is still waiting for. It
// answers once the pod VM is destroyed: containerd takes the answer to
// mean the pod left nothing (it removes the bundle and the snapshot next,
// and CRI's StopPodSandbox returns, after which the kubelet removes the
// pod's cgroup). containerd gives Shutdown 3 s; should the destroy take
// longer, the shim still ends once it is done.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	begin := time.Now()
	s.mu.Lock()
	n := s.containers.Len() + s.deleting
	gone := s.vmGone
	s.mu.Unlock()
	if n > 0 {
		return &ptypes.Empty{}, nil
	}
	var err error
	if gone != nil {
		select {
		case <-gone:
		case <-ctx.Done():
			err = fmt.Errorf("the pod VM is still being destroyed: %w", ctx.Err())
		}
	}
	s.shutdown.Shutdown()
	log.G(ctx).WithFields(log.Fields{
		"container": r.ID, "host_shutdown_begin_ns": begin.UnixNano(), "host_shutdown_answered_ns": time.Now().UnixNano(),
	}).Info("shim shut down")
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &ptypes.Empty{}, nil
}
