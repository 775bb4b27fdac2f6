package sandbox

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSizeFor(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	cases := []struct {
		name string
		spec *specs.Spec
		want Size
	}{
		{"no limits: base size", &specs.Spec{}, Size{1, 256}},
		{"container memory limit adds", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: i64(128 << 20)}}}}, Size{1, 384}},
		{"partial MiB rounds up", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: i64(1<<20 + 1)}}}}, Size{1, 258}},
		{"cpu quota of 1.5 gives 2 vCPUs", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}}}, Size{2, 256}},
		{"cpu quota of 1 gives the one vCPU it allows", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(100000), Period: u64(100000)}}}}, Size{1, 256}},
		{"cpu quota below one keeps the base", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(20000), Period: u64(100000)}}}}, Size{1, 256}},
		{"pod annotations win", &specs.Spec{Annotations: map[string]string{
			annotationSandboxMemory: "536870912", annotationSandboxCPUQuota: "200000", annotationSandboxCPUPeriod: "100000"},
			Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}}}, Size{2, 768}},
		{"unlimited quota -1 ignored", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}}}}, Size{1, 256}},
	}
	for _, c := range cases {
		got, err := SizeFor(c.spec, 1, 256)
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

// TestSizeForHostile: sizes a spec may ask for that no VM can have are
// refused, never wrapped around into a small VM; negative limits mean
// none.
func TestSizeForHostile(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	mem := func(limit int64) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(limit)}}}}
	}
	ann := func(kv ...string) *specs.Spec {
		s := &specs.Spec{Annotations: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
		return s
	}
	for _, c := range []struct {
		name    string
		spec    *specs.Spec
		want    Size
		wantErr string
	}{
		// 4 PiB + 1 MiB is 2^32 + 1 MiB: a uint32 would wrap it to 1.
		{"memory that wraps a uint32", mem(1<<52 + 1<<20), Size{}, "no VM can have more than"},
		{"max int64 memory", mem(1<<63 - 1), Size{}, "no VM can have more than"},
		{"negative memory is no limit", mem(-12345), Size{1, 256}, ""},
		{"annotation not a number", ann(annotationSandboxMemory, "lots"), Size{}, "is not a number"},
		{"annotation quota not a number", ann(annotationSandboxMemory, "0", annotationSandboxCPUQuota, "1e9"), Size{}, "is not a number"},
		{"negative annotations are no limit", ann(annotationSandboxMemory, "-1", annotationSandboxCPUQuota, "-100", annotationSandboxCPUPeriod, "100000"), Size{1, 256}, ""},
		{"huge quota stays countable", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(1 << 62), Period: u64(1)}}}}, Size{1<<32 - 1, 256}, ""},
		{"period beyond int64 ignored", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(100), Period: u64(1 << 63)}}}}, Size{1, 256}, ""},
	} {
		got, err := SizeFor(c.spec, 1, 256)
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: got %+v, %v; want an error with %q", c.name, got, err, c.wantErr)
		case c.wantErr == "" && (err != nil || got != c.want):
			t.Errorf("%s: got %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func TestFitHost(t *testing.T) {
	host := Host{CPUs: 2, MemoryMiB: 4096}
	if s, note, err := FitHost(Size{64, 512}, host); err != nil || s != (Size{2, 512}) || !strings.Contains(note, "64 vCPUs") {
		t.Errorf("64 vCPUs on 2 CPUs: %+v, %q, %v; want clamped to 2 with a note", s, note, err)
	}
	if s, note, err := FitHost(Size{1, 256}, host); err != nil || s != (Size{1, 256}) || note != "" {
		t.Errorf("a small VM: %+v, %q, %v", s, note, err)
	}
	if _, _, err := FitHost(Size{1, 4097}, host); err == nil || !strings.Contains(err.Error(), "more than this host's 4096 MiB") {
		t.Errorf("more memory than the host: %v", err)
	}
	h, err := ThisHost()
	if err != nil || h.CPUs == 0 || h.MemoryMiB == 0 {
		t.Errorf("ThisHost: %+v, %v", h, err)
	}
}

// FuzzSizeFor: whatever limits and annotations a spec carries, the VM
// size is the base or more, never wrapped below it, within what a VM can
// have, and FitHost keeps it within the host.
func FuzzSizeFor(f *testing.F) {
	f.Add([]byte(`{"linux":{"resources":{"memory":{"limit":9223372036854775807},"cpu":{"quota":9223372036854775807,"period":1}}}}`), uint32(1), uint32(256))
	f.Add([]byte(`{"annotations":{"io.kubernetes.cri.sandbox-memory":"-9223372036854775808","io.kubernetes.cri.sandbox-cpu-quota":"1","io.kubernetes.cri.sandbox-cpu-period":"0"}}`), uint32(255), uint32(64))
	f.Add([]byte(`{"annotations":{"io.kubernetes.cri.sandbox-memory":"4503599628419072"}}`), uint32(1), uint32(256))
	f.Fuzz(func(t *testing.T, data []byte, vcpus, mem uint32) {
		var s specs.Spec
		if json.Unmarshal(data, &s) != nil || mem > maxMemoryMiB {
			return
		}
		size, err := SizeFor(&s, vcpus, mem)
		if err != nil {
			return
		}
		if size.MemoryMiB < mem || size.MemoryMiB > maxMemoryMiB || size.VCPUs < vcpus {
			t.Fatalf("SizeFor(base %d vCPUs, %d MiB) = %+v", vcpus, mem, size)
		}
		host := Host{CPUs: 2, MemoryMiB: 4096}
		fit, _, err := FitHost(size, host)
		if err == nil && (fit.VCPUs > host.CPUs || uint64(fit.MemoryMiB) > host.MemoryMiB) {
			t.Fatalf("FitHost(%+v) = %+v on %+v", size, fit, host)
		}
	})
}
