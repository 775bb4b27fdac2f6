// Package server implements AgentService, the ttrpc API the shim drives the
// guest with. It is a thin layer: it checks requests, calls the container
// manager and the sandbox setup, and turns errors into ttrpc status codes.
package server

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
	"github.com/podvm/podvm/agent/network"
)

// Version is the agent's version, set with
// -ldflags "-X github.com/podvm/podvm/agent/server.Version=...".
var Version = "dev"

// Config is what the service needs from main.
type Config struct {
	Containers *container.Manager
	// Guest is true when the agent is the VM's PID 1. Only then does
	// CreateSandbox change the hostname, which on a host would be the
	// host's.
	Guest bool
	// StartedNs is CLOCK_BOOTTIME when the agent's main began.
	StartedNs int64
	// Network configures the guest's interfaces; nil refuses
	// ConfigureNetwork (off the guest it would touch the host's).
	Network *network.Configurer
	// Handover reseeds and re-keys a VM restored from a template; nil
	// refuses Handover (off the guest, and where no key can change).
	Handover func(ctx context.Context, entropy []byte) error
}

// Service implements api.AgentServiceService.
type Service struct {
	cfg Config

	mu        sync.Mutex
	readyNs   int64
	transport string
	sandbox   sandbox
	ports     portTable
}

var _ api.AgentServiceService = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	return &Service{cfg: cfg}
}

// SetReady records that the agent serves on transport from readyNs
// (CLOCK_BOOTTIME) on; GuestDetails reports both. The first ready time is
// kept: it is a boot phase, and a later re-listen is not.
func (s *Service) SetReady(transport string, readyNs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transport = transport
	if s.readyNs == 0 {
		s.readyNs = readyNs
		// The host connects next; the guest has nothing else to do.
		if s.cfg.Containers != nil {
			go s.cfg.Containers.Warm()
		}
	}
}

// NewServer returns a ttrpc server with the service registered and every
// error mapped to a status code.
func NewServer(svc *Service) (*ttrpc.Server, error) {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(intercept))
	if err != nil {
		return nil, fmt.Errorf("ttrpc server: %w", err)
	}
	api.RegisterAgentServiceService(srv, svc)
	return srv, nil
}

// callsStarted and callsFinished count handler calls, for the agent
// channel's stall watch (CallCounts).
var callsStarted, callsFinished atomic.Uint64

// CallCounts returns how many calls the handlers have begun and finished.
func CallCounts() (started, finished uint64) {
	return callsStarted.Load(), callsFinished.Load()
}

// intercept maps errdefs errors to ttrpc status codes (NotFound,
// FailedPrecondition, ...), turns a panic in a handler into an Internal
// error (a panic must not reach the runtime, which would end PID 1 and
// panic the guest kernel), and reports a call that runs long
// (watchSlowCall).
func intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (resp any, err error) {
	callsStarted.Add(1)
	defer callsFinished.Add(1)
	defer func() {
		if r := recover(); r != nil {
			log.G(ctx).Errorf("panic in %s: %v\n%s", info.FullMethod, r, debug.Stack())
			resp, err = nil, status.Errorf(codes.Internal, "%s: agent panic: %v", info.FullMethod, r)
		}
	}()
	stop := watchSlowCall(info.FullMethod)
	defer stop()
	resp, err = method(ctx, unmarshal)
	if err != nil {
		err = errgrpc.ToGRPC(err)
	}
	return resp, err
}
