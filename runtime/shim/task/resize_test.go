package task

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/sandbox"
)

func TestFitsVM(t *testing.T) {
	vm := sandbox.Size{VCPUs: 2, MemoryMiB: 320}
	mem := func(b int64) *specs.LinuxMemory { return &specs.LinuxMemory{Limit: &b} }
	cpu := func(quota int64, period uint64) *specs.LinuxCPU {
		return &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	for _, tc := range []struct {
		name string
		res  specs.LinuxResources
		want []string // parts of the error; nil: fits
	}{
		{"within size", specs.LinuxResources{Memory: mem(96 << 20), CPU: cpu(150000, 100000)}, nil},
		{"exactly the VM", specs.LinuxResources{Memory: mem(320 << 20), CPU: cpu(200000, 100000)}, nil},
		{"lowering", specs.LinuxResources{Memory: mem(32 << 20), CPU: cpu(10000, 100000)}, nil},
		{"no limits", specs.LinuxResources{Memory: mem(-1), CPU: cpu(-1, 100000)}, nil},
		{"shares only", specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(1024))}}, nil},
		{"over memory", specs.LinuxResources{Memory: mem(320<<20 + 1)}, []string{"321 MiB", "has 320 MiB", "cannot grow"}},
		{"over CPU", specs.LinuxResources{CPU: cpu(200001, 100000)}, []string{"3 CPUs", "quota 200001, period 100000", "has 2 vCPUs"}},
		{"over both: memory named first", specs.LinuxResources{Memory: mem(1 << 30), CPU: cpu(400000, 100000)}, []string{"1024 MiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.res
			err := fitsVM("c1", &res, vm)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("fitsVM: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("fitsVM: nil, want an error")
			}
			if !errors.Is(err, errdefs.ErrResourceExhausted) {
				t.Errorf("fitsVM: %v, want ErrResourceExhausted", err)
			}
			for _, part := range append(tc.want, "c1") {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("fitsVM: %q does not name %q", err, part)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
