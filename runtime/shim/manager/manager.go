// Package manager starts and stops containerd-shim-podvm-v2 processes: the
// `start` action that spawns (or reuses) the long-running shim of a pod, and
// the `delete` action that cleans up after a shim that is gone. It mirrors
// containerd's runc shim manager, grouping a pod's containers into one shim
// (and therefore one VM) by the CRI sandbox-id annotation (runtime/shim/grouping).
package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	// Registers runc's options type, so that they can be read (and ignored).
	_ "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/sandbox/crash"
	"github.com/podvm/podvm/runtime/shim/grouping"
	"github.com/podvm/podvm/version"
)

// New returns the shim manager for runtime name (io.containerd.podvm.v2).
func New(name string) shim.Shim { return manager{name: name} }

type manager struct{ name string }

func (m manager) Name() string { return m.name }

// groupOf reads the bundle's spec annotations to find the container's group
// (grouping.Of: a CRI container's sandbox id, whatever else it names).
func groupOf(id string) (string, error) {
	b, err := os.ReadFile("config.json")
	if err != nil {
		return "", fmt.Errorf("read OCI spec of %s: %w", id, err)
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("parse OCI spec of %s: %w", id, err)
	}
	return grouping.Of(id, s.Annotations)
}

// Start spawns the shim daemon of the container's group, or returns the
// address of the one already serving the group.
func (m manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	id := params.GetInstanceID()
	group, err := groupOf(id)
	if err != nil {
		return nil, err
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	address, err := shim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), group, false)
	if err != nil {
		return nil, err
	}
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: address}

	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			return result, nil // the pod's shim is running: join it
		}
		if err := shim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			shim.RemoveSocket(address)
		}
	}()
	f, err := socket.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()

	cmd, err := daemonCommand(ctx, id, params)
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim daemon: %w", err)
	}
	go cmd.Wait()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("adjust OOM score of shim: %w", err)
	}
	return result, nil
}

func daemonCommand(ctx context.Context, id string, params *bootapi.BootstrapParams) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = os.Environ()
	// Its own process group: a signal to containerd's group must not reach
	// the shim, which would take the pod's VM down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop runs as `shim delete` after the shim is gone (or never started): it
// undoes what the bundle's sandbox record names.
func (m manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, err
	}
	bundle := filepath.Join(filepath.Dir(cwd), id)
	rec, ok, err := crash.ReadRecord(bundle)
	if err != nil {
		log.G(ctx).WithError(err).Warn("read podvm sandbox record")
	}
	if ok {
		if err := crash.Cleanup(rec); err != nil {
			log.G(ctx).WithError(err).WithField("container", id).Warn("clean up after podvm shim")
		}
		crash.RemoveRecord(bundle)
	}
	removeStaleSocket(ctx, bundle)
	return shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
}

// removeStaleSocket removes the shim socket the bundle's bootstrap.json
// names if nothing listens on it any more: a shim killed with SIGKILL
// cannot remove its own. A socket that still answers is a live shim's
// (the pod's other containers share it) and stays.
func removeStaleSocket(ctx context.Context, bundle string) {
	b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json"))
	if err != nil {
		return
	}
	var params struct {
		Address string `json:"address"`
	}
	if json.Unmarshal(b, &params) != nil || params.Address == "" || shim.CanConnect(params.Address) {
		return
	}
	if err := shim.RemoveSocket(params.Address); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).Warn("remove the socket of a dead podvm shim")
	}
}

// Info describes the runtime to containerd, including what the guest's
// runc can do, from which CRI decides on recursive read-only mounts and
// user namespaces.
func (m manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	info := &types.RuntimeInfo{
		Name:    m.name,
		Version: &types.RuntimeVersion{Version: version.Version, Revision: version.Revision},
	}
	path := ""
	// The options are the handler's (ConfigPath) or, for a user namespace
	// container of a handler without options, runc's, which containerd
	// 2.4 adds (IoUid, IoGid) and which mean nothing here.
	opts, err := shim.ReadRuntimeOptions[any](optionsR)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("read runtime options: %w", err)
	}
	if o, ok := opts.(*runtimeoptions.Options); ok {
		path = o.ConfigPath
	}
	exe, _ := os.Executable()
	cfg, err := config.Resolve(path, exe)
	if err != nil {
		return nil, err
	}
	f, err := guestFeatures(cfg.Config.Hypervisor.RuncFeatures)
	if err != nil {
		return nil, err
	}
	if f != nil {
		if info.Features, err = typeurl.MarshalAnyToProto(f); err != nil {
			return nil, fmt.Errorf("encode runtime features: %w", err)
		}
	}
	return info, nil
}

// guestFeatures reads the guest runc's features; nil when none were recorded.
// They are reported as they are, idmapped mounts included, although the
// guest's 6.1 kernel cannot idmap its virtio-fs mounts, where every container
// filesystem lives: the shim makes idmapped mounts on the host instead (a
// user namespace pod's root filesystem through containerd's mount package,
// its volumes in share.Share.ShareMounts), and the guest sees the ids already
// shifted. containerd offers user namespace pods only to a runtime that
// reports idmap support.
func guestFeatures(path string) (*features.Features, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read guest runtime features: %w", err)
	}
	var f features.Features
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse guest runtime features %s: %w", path, err)
	}
	return &f, nil
}
