package task

import (
	"fmt"
	"os"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podvm/podvm/runtime/config"
)

// loadConfig resolves the configuration as every podvm command does
// (config.Resolve, Kata's precedence): the runtime option ConfigPath from
// containerd (CRI `options.ConfigPath`, ctr --runtime-config-path), else
// $PODVM_CONFIG, else the operator's /etc/podvm/config.toml, else the
// config of the shim's own install, else the defaults, with the operator's
// drop-ins on top of the last three. It returns the base file. Options of
// another kind are not an error: containerd gives runc's (IoUid, IoGid) to
// a user namespace container of a handler that has no options, and they
// mean nothing here (the container's stdio is in the guest).
func loadConfig(opts *anypb.Any) (*config.Config, string, error) {
	path := ""
	if opts != nil && opts.GetValue() != nil && typeurl.Is(opts, (*runtimeoptions.Options)(nil)) {
		v, err := typeurl.UnmarshalAny(opts)
		if err != nil {
			return nil, "", fmt.Errorf("decode runtime options: %w", err)
		}
		if o, ok := v.(*runtimeoptions.Options); ok {
			path = o.ConfigPath
		}
	}
	e, err := config.Resolve(path, executable())
	if err != nil {
		return nil, path, err
	}
	return e.Config, e.Base(), nil
}

// executable is the shim's own path, "" if the kernel cannot say.
func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}
