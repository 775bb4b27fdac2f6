package task

import (
	"fmt"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podvm/podvm/runtime/config"
)

// loadConfig finds the config file the way Kata does: the runtime option
// ConfigPath from containerd (CRI `options.ConfigPath`, ctr
// --runtime-config-path), else $PODVM_CONFIG, else the default path.
func loadConfig(opts *anypb.Any) (*config.Config, string, error) {
	path := ""
	if opts != nil && opts.GetValue() != nil {
		v, err := typeurl.UnmarshalAny(opts)
		if err != nil {
			return nil, "", fmt.Errorf("decode runtime options: %w", err)
		}
		if o, ok := v.(*runtimeoptions.Options); ok {
			path = o.ConfigPath
		}
	}
	path = config.Resolve(path)
	c, err := config.Load(path)
	return c, path, err
}
