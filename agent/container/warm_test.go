package container

import (
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestWarmSpecDecodes: the warm-up's spec must decode, or it warms nothing.
func TestWarmSpecDecodes(t *testing.T) {
	var spec specs.Spec
	if err := json.Unmarshal([]byte(warmSpec), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Linux == nil || spec.Linux.Resources == nil || spec.Linux.Seccomp == nil || spec.Process == nil {
		t.Errorf("warm-up spec decoded without the parts it is for: %+v", spec)
	}
}
