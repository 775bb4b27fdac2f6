package qemu

import "testing"

func TestTSCFromKernelLog(t *testing.T) {
	log := "6,1,0,-;tsc: Detected 2596.120 MHz processor\n" +
		"6,2,5,-;other\n" +
		"6,9,900,-;tsc: Refined TSC clocksource calibration: 2596.004 MHz\n"
	if v, ok := tscFromKernelLog(log); !ok || v != 2596004 {
		t.Errorf("refined: %d %v", v, ok)
	}
	if v, ok := tscFromKernelLog("6,1,0,-;tsc: Detected 2596.120 MHz processor\n"); !ok || v != 2596120 {
		t.Errorf("detected: %d %v", v, ok)
	}
	if _, ok := tscFromKernelLog("nothing"); ok {
		t.Error("found a rate in nothing")
	}
}

func TestTSCFromCPUInfo(t *testing.T) {
	tests := []struct {
		name  string
		flags string
		want  uint64
	}{
		{"known frequency (this host)", "fpu tsc constant_tsc nonstop_tsc tsc_known_freq", 2596120},
		{"no aperfmperf: cpu MHz is cpu_khz", "tsc constant_tsc", 2596120},
		{"aperfmperf: cpu MHz is the current clock", "tsc constant_tsc aperfmperf", 0},
		{"variable tsc", "tsc", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := "processor\t: 0\ncpu MHz\t\t: 2596.120\nflags\t\t: " + tt.flags + "\n"
			got, _ := tscFromCPUInfo(info)
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestHostTSCKHz(t *testing.T) {
	khz, src, err := HostTSCKHz()
	if err != nil {
		t.Skipf("no TSC rate on this host: %v", err)
	}
	t.Logf("host TSC %d kHz from %s", khz, src)
	if khz < 100000 || khz > 10000000 {
		t.Errorf("implausible TSC rate %d kHz", khz)
	}
}
