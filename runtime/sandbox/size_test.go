package sandbox

import (
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
		{"cpu quota of 1.5 adds 2", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}}}, Size{3, 256}},
		{"pod annotations win", &specs.Spec{Annotations: map[string]string{
			annotationSandboxMemory: "536870912", annotationSandboxCPUQuota: "200000", annotationSandboxCPUPeriod: "100000"},
			Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}}}, Size{3, 768}},
		{"unlimited quota -1 ignored", &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}}}}, Size{1, 256}},
	}
	for _, c := range cases {
		if got := SizeFor(c.spec, 1, 256); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/run/a\040b`); got != "/run/a b" {
		t.Fatalf("got %q", got)
	}
}
