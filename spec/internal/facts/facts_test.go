package facts

import (
	"testing"
	"time"
)

func TestMemTotal(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"guest", "MemTotal:         374676 kB\nMemFree:          194688 kB\n", 374676 * 1024, false},
		{"not first line", "MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048 * 1024, false},
		{"missing", "MemFree: 1 kB\n", 0, true},
		{"garbage number", "MemTotal: lots kB\n", 0, true},
		{"unknown unit", "MemTotal: 12 MB\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MemTotal(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("MemTotal = %d, %v; want %d, err=%v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestFreeTotal(t *testing.T) {
	const busybox = `              total        used        free      shared  buff/cache   available
Mem:       24681432     3091236    18443512       10468     3146684    21194360
Swap:             0           0           0
`
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"busybox free", busybox, 24681432 * 1024, false},
		{"after other lines", "MemTotal:  131072 kB\n" + busybox, 24681432 * 1024, false},
		{"missing", "MemTotal:  131072 kB\n", 0, true},
		{"garbage number", "Mem: lots 1 2\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FreeTotal(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("FreeTotal = %d, %v; want %d, err=%v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestLoadavgTasks(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"0.00 0.00 0.00 1/55 16\n", 55, false},
		{"0.54 0.71 1.03 3/1170 27255", 1170, false},
		{"0.54 0.71 1.03", 0, true},
		{"0.54 0.71 1.03 1170 27255", 0, true},
		{"0.54 0.71 1.03 1/x 2", 0, true},
	} {
		got, err := LoadavgTasks(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("LoadavgTasks(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestUptime(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"9369.39 12272.48\n", 9369390 * time.Millisecond, false},
		{"1.5", 1500 * time.Millisecond, false},
		{"", 0, true},
		{"abc 1", 0, true},
	} {
		got, err := Uptime(tc.in)
		if (err != nil) != tc.wantErr || (got-tc.want).Abs() > time.Millisecond {
			t.Errorf("Uptime(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestKeyValues(t *testing.T) {
	got := KeyValues("a=1\nnoise\nb = two words \r\na=3\n=x\nc=\n")
	want := map[string]string{"a": "3", "b": "two words", "c": ""}
	if len(got) != len(want) {
		t.Fatalf("KeyValues = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("KeyValues[%q] = %q; want %q", k, got[k], v)
		}
	}
}

func TestPodPidsLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    int64
		set     bool
		wantErr bool
	}{
		{"set", `{"kubeletconfig":{"kind":"KubeletConfiguration","podPidsLimit":1024}}`, 1024, true, false},
		{"minus one", `{"kubeletconfig":{"podPidsLimit":-1}}`, 0, false, false},
		{"zero", `{"kubeletconfig":{"podPidsLimit":0}}`, 0, false, false},
		{"absent", `{"kubeletconfig":{"maxPods":110}}`, 0, false, false},
		{"not json", `<html>`, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, set, err := PodPidsLimit([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want || set != tc.set {
				t.Fatalf("PodPidsLimit = %d, %v, %v; want %d, %v, err=%v", got, set, err, tc.want, tc.set, tc.wantErr)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v; want %v", tc.in, got, tc.want)
		}
	}
}

func TestCeilCPUs(t *testing.T) {
	for in, want := range map[int64]int64{0: 0, 1: 1, 999: 1, 1000: 1, 1001: 2, 2500: 3} {
		if got := CeilCPUs(in); got != want {
			t.Errorf("CeilCPUs(%d) = %d; want %d", in, got, want)
		}
	}
}
