package task

import (
	"fmt"
	"os"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podvm/podvm/runtime/config"
)

// loadConfig finds the config file the way Kata does: the runtime option
// ConfigPath from containerd (CRI `options.ConfigPath`, ctr
// --runtime-config-path), else $PODVM_CONFIG, else the config of the
// shim's own install, else the default path (config.ResolveFor). Options of
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
	path = config.ResolveFor(path, executable())
	c, err := config.Load(path)
	return c, path, err
}

// executable is the shim's own path, "" if the kernel cannot say.
func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}
