package container

import (
	"context"
	"errors"
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/cgroup"
)

func TestSetupFloor(t *testing.T) {
	tests := []struct {
		name  string
		limit cgroup.CPUMax
		want  cgroup.CPUMax
		raise bool
	}{
		{"10m", cgroup.CPUMax{Quota: 1000, Period: 100000}, cgroup.CPUMax{Quota: 50000, Period: 100000}, true},
		{"499m", cgroup.CPUMax{Quota: 49900, Period: 100000}, cgroup.CPUMax{Quota: 50000, Period: 100000}, true},
		{"half a CPU", cgroup.CPUMax{Quota: 50000, Period: 100000}, cgroup.CPUMax{Quota: 50000, Period: 100000}, false},
		{"two CPUs", cgroup.CPUMax{Quota: 200000, Period: 100000}, cgroup.CPUMax{Quota: 200000, Period: 100000}, false},
		{"no limit", cgroup.CPUMax{Quota: -1, Period: 100000}, cgroup.CPUMax{Quota: -1, Period: 100000}, false},
		{"other period", cgroup.CPUMax{Quota: 1000, Period: 10000}, cgroup.CPUMax{Quota: 5000, Period: 10000}, true},
	}
	for _, tt := range tests {
		got, raise := setupFloor(tt.limit)
		if got != tt.want || raise != tt.raise {
			t.Errorf("%s: setupFloor(%s) = %s, %v; want %s, %v", tt.name, tt.limit, got, raise, tt.want, tt.raise)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestSpecCPUMax(t *testing.T) {
	tests := []struct {
		name string
		r    *specs.LinuxResources
		want string
	}{
		{"no resources", nil, "max 100000"},
		{"no CPU", &specs.LinuxResources{}, "max 100000"},
		{"shares only", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(2))}}, "max 100000"},
		{"quota, default period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(1000))}}, "1000 100000"},
		{"quota and period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(1000)), Period: ptr(uint64(50000))}}, "1000 50000"},
		{"quota -1", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(-1)), Period: ptr(uint64(100000))}}, "max 100000"},
	}
	for _, tt := range tests {
		if got := specCPUMax(tt.r).String(); got != tt.want {
			t.Errorf("%s: specCPUMax = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func smallCPUSpec() *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: ptr(int64(64 << 20))},
		CPU:     &specs.LinuxCPU{Quota: ptr(int64(1000)), Period: ptr(uint64(100000)), Shares: ptr(uint64(2))},
	}}}
}

// TestRaiseInSpec: a small limit is raised in the bundle only, on cgroup
// v2 only, and settle applies the spec's own resources, all of them,
// through the runtime's update.
func TestRaiseInSpec(t *testing.T) {
	spec := smallCPUSpec()
	var f cpuFloor
	f.raiseInSpec(spec, true)
	if got := specCPUMax(spec.Linux.Resources).String(); got != "50000 100000" {
		t.Errorf("the bundle asks for cpu.max %q, want the floor \"50000 100000\"", got)
	}
	if *spec.Linux.Resources.Memory.Limit != 64<<20 || *spec.Linux.Resources.CPU.Shares != 2 {
		t.Error("raising the quota changed the spec's other resources")
	}
	var applied *specs.LinuxResources
	if err := f.settle(cgroup.Cgroup{}, func(r *specs.LinuxResources) error { applied = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if applied == nil || specCPUMax(applied).String() != "1000 100000" || *applied.Memory.Limit != 64<<20 {
		t.Fatalf("settle applied %+v, want the spec's own resources (cpu.max 1000 100000)", applied)
	}
	if applied.Devices != nil || len(spec.Linux.Resources.Devices) != 1 {
		t.Errorf("settle applied device rules %v (the bundle has %v), want none, as a CRI update", applied.Devices, spec.Linux.Resources.Devices)
	}
	if err := f.settle(cgroup.Cgroup{}, func(*specs.LinuxResources) error { t.Error("applied twice"); return nil }); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name    string
		spec    *specs.Spec
		unified bool
	}{
		{"cgroup v1", smallCPUSpec(), false},
		{"half a CPU", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(50000))}}}}, true},
		{"no resources", &specs.Spec{Linux: &specs.Linux{}}, true},
	} {
		before := specCPUMax(tt.spec.Linux.Resources)
		var f cpuFloor
		f.raiseInSpec(tt.spec, tt.unified)
		if after := specCPUMax(tt.spec.Linux.Resources); after != before {
			t.Errorf("%s: the bundle's cpu.max became %s, want %s", tt.name, after, before)
		}
		if err := f.settle(cgroup.Cgroup{}, func(*specs.LinuxResources) error { t.Errorf("%s: an update after create", tt.name); return nil }); err != nil {
			t.Fatal(err)
		}
	}

	failing := cpuFloor{}
	failing.raiseInSpec(smallCPUSpec(), true)
	if err := failing.settle(cgroup.Cgroup{}, func(*specs.LinuxResources) error { return errors.New("runc update failed") }); err == nil {
		t.Error("settle hid a failed update: the container would start above its limit")
	}
}

// fakeCgroup is a cgroup v2 directory whose cpu.max is a plain file.
func fakeCgroup(t *testing.T, cpuMax string) cgroup.Cgroup {
	cg := cgroup.Cgroup{V2: true, Root: t.TempDir(), Path: "/c1"}
	if err := os.Mkdir(cg.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cg.Dir()+"/cpu.max", []byte(cpuMax), 0o644); err != nil {
		t.Fatal(err)
	}
	return cg
}

func readCPUMax(t *testing.T, cg cgroup.Cgroup) string {
	t.Helper()
	m, err := cg.CPUMax()
	if err != nil {
		t.Fatal(err)
	}
	return m.String()
}

// settledFloor is the cpuFloor of a created container limited to limit.
func settledFloor(t *testing.T, limit string) (*cpuFloor, cgroup.Cgroup) {
	cg := fakeCgroup(t, limit)
	m, err := cgroup.ParseCPUMax(limit)
	if err != nil {
		t.Fatal(err)
	}
	f := &cpuFloor{limit: m}
	if err := f.settle(cg, nil); err != nil {
		t.Fatal(err)
	}
	return f, cg
}

// TestLend: an exec's setup runs under the floor and the limit comes back
// when the last of overlapping execs returns; a container without a small
// limit is untouched.
func TestLend(t *testing.T) {
	ctx := context.Background()
	f, cg := settledFloor(t, "1000 100000")
	giveBack1 := f.lend(ctx)
	if got := readCPUMax(t, cg); got != "50000 100000" {
		t.Errorf("during an exec cpu.max is %q, want the floor", got)
	}
	giveBack2 := f.lend(ctx)
	giveBack1()
	if got := readCPUMax(t, cg); got != "50000 100000" {
		t.Errorf("with one exec still under way cpu.max is %q, want the floor", got)
	}
	giveBack2()
	if got := readCPUMax(t, cg); got != "1000 100000" {
		t.Errorf("after the execs cpu.max is %q, want the container's own 1000 100000", got)
	}

	for _, limit := range []string{"max 100000", "50000 100000"} {
		f, cg := settledFloor(t, limit)
		// Any write would create the file again.
		if err := os.Remove(cg.Dir() + "/cpu.max"); err != nil {
			t.Fatal(err)
		}
		f.lend(ctx)()
		if _, err := os.Stat(cg.Dir() + "/cpu.max"); err == nil {
			t.Errorf("cpu.max %s was written around an exec", limit)
		}
	}
}

// TestUpdateDuringExec: a resize while an exec's setup is under way is the
// limit the exec gives back, and the floor stays lent until then.
func TestUpdateDuringExec(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, update, during, after string
	}{
		{"to another small limit", "2000 100000", "50000 100000", "2000 100000"},
		{"to above the floor", "80000 100000", "80000 100000", "80000 100000"},
		{"to no limit", "max 100000", "max 100000", "max 100000"},
	}
	for _, tt := range tests {
		f, cg := settledFloor(t, "1000 100000")
		giveBack := f.lend(ctx)
		// What the runtime's update does: write the new limit.
		err := f.update(ctx, func() error { return os.WriteFile(cg.Dir()+"/cpu.max", []byte(tt.update), 0o644) })
		if err != nil {
			t.Fatal(err)
		}
		if got := readCPUMax(t, cg); got != tt.during {
			t.Errorf("%s: after the update, during the exec, cpu.max is %q, want %q", tt.name, got, tt.during)
		}
		giveBack()
		if got := readCPUMax(t, cg); got != tt.after {
			t.Errorf("%s: after the exec cpu.max is %q, want the update's %q", tt.name, got, tt.after)
		}
	}

	f, cg := settledFloor(t, "1000 100000")
	if err := f.update(ctx, func() error { return errors.New("runc update failed") }); err == nil {
		t.Error("update hid the runtime's error")
	}
	// A limit that cannot be read back does not fail an update that was made.
	if err := f.update(ctx, func() error { return os.Remove(cg.Dir() + "/cpu.max") }); err != nil {
		t.Errorf("an update that succeeded reported %v", err)
	}
	if err := os.WriteFile(cg.Dir()+"/cpu.max", []byte("1000 100000"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.lend(ctx)()
	if got := readCPUMax(t, cg); got != "1000 100000" {
		t.Errorf("after a failed update and an exec cpu.max is %q, want 1000 100000", got)
	}
}
