package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseCPUMax(t *testing.T) {
	tests := []struct {
		in      string
		want    CPUMax
		wantErr bool
	}{
		{"1000 100000\n", CPUMax{Quota: 1000, Period: 100000}, false},
		{"max 100000\n", CPUMax{Quota: -1, Period: 100000}, false},
		{"max 50000", CPUMax{Quota: -1, Period: 50000}, false},
		{"1000", CPUMax{}, true},
		{"1000 0", CPUMax{}, true},
		{"-5 100000", CPUMax{}, true},
		{"lots 100000", CPUMax{}, true},
	}
	for _, tt := range tests {
		got, err := ParseCPUMax(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseCPUMax(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			if back, _ := ParseCPUMax(got.String()); back != got {
				t.Errorf("%+v reads back as %+v from %q", got, back, got.String())
			}
		}
	}
}

func TestSetCPUMax(t *testing.T) {
	root := t.TempDir()
	cg := Cgroup{V2: true, Root: root, Path: "/c1"}
	if err := os.Mkdir(cg.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	want := CPUMax{Quota: 1000, Period: 100000}
	if err := cg.SetCPUMax(want); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(cg.Dir(), "cpu.max")); string(data) != "1000 100000" {
		t.Errorf("cpu.max holds %q", data)
	}
	if got, err := cg.CPUMax(); err != nil || got != want {
		t.Errorf("CPUMax() = %+v, %v; want %+v", got, err, want)
	}
	v1 := Cgroup{Root: root, Path: "/c1"}
	if _, err := v1.CPUMax(); err == nil {
		t.Error("a cgroup v1 reads a cpu.max")
	}
	if err := v1.SetCPUMax(want); err == nil {
		t.Error("a cgroup v1 took a cpu.max")
	}
}
