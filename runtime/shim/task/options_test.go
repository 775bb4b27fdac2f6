package task

import (
	"os"
	"path/filepath"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podvm/podvm/runtime/config"
)

func TestLoadConfigOptions(t *testing.T) {
	custom := filepath.Join(t.TempDir(), "podvm.toml")
	if err := os.WriteFile(custom, []byte("[hypervisor]\ndefault_memory_mib = 384\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvPath, "")
	anyOf := func(v any) *anypb.Any {
		a, err := typeurl.MarshalAnyToProto(v)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name     string
		opts     *anypb.Any
		wantPath string
	}{
		{"ConfigPath option", anyOf(&runtimeoptions.Options{ConfigPath: custom}), custom},
		// What containerd 2.4 passes for a user namespace container of a
		// handler without options: runc's, with the stdio owner.
		{"runc options are ignored", anyOf(&runcoptions.Options{IoUid: 1000, IoGid: 1000}), config.DefaultPath},
		{"no options", nil, config.DefaultPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, path, err := loadConfig(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			// The test binary has no install beside it, so without an
			// option the default path is used (absent: the defaults).
			if path != tt.wantPath {
				t.Errorf("config path %q, want %q", path, tt.wantPath)
			}
			if tt.wantPath == custom && cfg.Hypervisor.DefaultMemoryMiB != 384 {
				t.Errorf("default_memory_mib = %d, want the file's 384", cfg.Hypervisor.DefaultMemoryMiB)
			}
		})
	}
}
