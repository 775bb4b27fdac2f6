package density

import (
	"math"
	"reflect"
	"sort"
	"testing"

	"github.com/podvm/podvm/bench/procmem"
	"github.com/podvm/podvm/bench/result"
)

func TestCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []int
	}{
		{1, []int{1}},
		{3, []int{1, 2, 3}},
		{12, []int{1, 2, 5, 10, 12}},
		{25, []int{1, 2, 5, 10, 15, 20, 25}},
		{42, []int{1, 2, 5, 10, 15, 20, 30, 40, 42}},
	} {
		var got []int
		for c, on := range checkpoints(tc.n) {
			if on {
				got = append(got, c)
			}
		}
		sort.Ints(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("checkpoints(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestPodMemoryOf(t *testing.T) {
	const mib = 1024 // KiB
	for _, tc := range []struct {
		name                  string
		shim, vmm, vfs, ctrs  procmem.Breakdown
		touched               uint64
		total, over, overNoTC float64
	}{
		{
			name:    "pod VM",
			shim:    procmem.Breakdown{PssKB: 10 * mib},
			vmm:     procmem.Breakdown{PssKB: 170 * mib, GuestRAMKB: 60 * mib, JITKB: 64 * mib, ImagesKB: 6 * mib},
			vfs:     procmem.Breakdown{PssKB: 5 * mib, GuestRAMKB: 4 * mib},
			touched: 66 * mib,
			total:   185, over: 185 - 60 - 4, overNoTC: 185 - 60 - 4 - 64,
		},
		{
			name:  "runc pod: the shim is the overhead",
			shim:  procmem.Breakdown{PssKB: 8 * mib},
			ctrs:  procmem.Breakdown{PssKB: 3 * mib},
			total: 11, over: 8, overNoTC: 8,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := podMemoryOf(tc.shim, tc.vmm, tc.vfs, tc.ctrs, tc.touched)
			if m.Total != tc.total || m.HostOverhead != tc.over || m.HostOverheadExclTCG != tc.overNoTC {
				t.Errorf("total %v overhead %v (no TCG %v), want %v %v %v", m.Total, m.HostOverhead, m.HostOverheadExclTCG, tc.total, tc.over, tc.overNoTC)
			}
			if m.GuestRAMTouched != float64(tc.touched)/1024 || m.VMMOtherPSS != float64(tc.vmm.OtherKB())/1024 {
				t.Errorf("touched %v other %v", m.GuestRAMTouched, m.VMMOtherPSS)
			}
		})
	}
}

func TestPoint(t *testing.T) {
	pods := []result.PodMemory{
		{ShimPSS: 10, HostOverhead: 100, Total: 170, GuestRAMTouched: 60, CgroupCharge: 150},
		{ShimPSS: 8, HostOverhead: 120, Total: 190, GuestRAMTouched: 70, CgroupCharge: 170},
	}
	pt := point(pods, 1000, 1400)
	if pt.Pods != 2 || pt.PerPod.ShimPSS != 9 || pt.PerPod.HostOverhead != 110 || pt.PerPod.Total != 180 ||
		pt.PerPod.GuestRAMTouched != 65 || pt.PerPod.CgroupCharge != 160 {
		t.Errorf("mean %+v", pt.PerPod)
	}
	if pt.ShimPSS.Max != 10 || pt.ShimPSS.Min != 8 || pt.HostOverhead.Median != 110 {
		t.Errorf("summaries %+v %+v", pt.ShimPSS, pt.HostOverhead)
	}
	if math.Abs(pt.MemAvailableDropPerPodMiB-200) > 1e-9 {
		t.Errorf("MemAvailable drop per pod %v, want 200", pt.MemAvailableDropPerPodMiB)
	}
	if empty := point(nil, 0, 0); empty.Pods != 0 || empty.ShimPSS.N != 0 {
		t.Errorf("no pods: %+v", empty)
	}
}
