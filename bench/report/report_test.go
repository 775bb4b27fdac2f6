package report

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// sample is a results file as a run on a TCG host writes it, with made-up
// figures (every benchmark run, gVisor measured).
func sample() *result.Results {
	sum := func(xs ...float64) stats.Summary { return stats.Summarize(xs) }
	boot := &result.Boot{Runs: 3,
		Phases: []result.Phase{
			{Name: "vmm_spawn_to_kernel_entry", From: "vmm_spawned", To: "guest_kernel_entry", Clock: "mapped", Duration: sum(240, 250, 260)},
			{Name: "kernel_to_agent_start", From: "guest_kernel_entry", To: "guest_agent_started", Clock: "guest", Duration: sum(330, 340, 350)},
		},
		BootToAgentReady: sum(650, 680, 700), GuestBootToAgentReady: sum(380, 390, 400), ToFirstOutput: sum(1400, 1500, 1600),
		CtrRunTrue: []result.HandlerTimes{
			{Handler: "runc", Runtime: "runc", Time: sum(100, 110, 120), MedianRatioToRunc: 1, SamplesMs: []float64{100, 110, 120}},
			{Handler: "podvm", Runtime: "podvm", Time: sum(1500, 1600), MedianRatioToRunc: 14.5, SamplesMs: []float64{1500, 1600}},
			{Handler: "runsc", Runtime: "runsc (gVisor)", Time: sum(200, 220), MedianRatioToRunc: 1.9, SamplesMs: []float64{200, 220}},
		},
	}
	for i := 0; i < 3; i++ {
		d := float64(i * 10)
		boot.Samples = append(boot.Samples, result.BootSample{Accelerator: "tcg", Transport: "serial", TotalMs: 1800 + d,
			Marks: map[string]float64{"vmm_spawned": 40, "guest_kernel_entry": 290 + d, "guest_agent_started": 630 + d}})
	}
	pm := result.PodMemory{ShimPSS: 9, VMMPSS: 166, VMMGuestRAMPSS: 63, VMMTCGCachePSS: 64, VMMImagesPSS: 9, VMMOtherPSS: 30,
		VirtiofsdPSS: 5, VirtiofsdGuestRAMPSS: 4, GuestRAMTouched: 67, Total: 180, HostOverhead: 113, HostOverheadExclTCG: 49, CgroupCharge: 156}
	return &result.Results{
		Schema: result.Schema, StartedAt: time.Unix(1000, 0).UTC(), FinishedAt: time.Unix(2000, 0).UTC(),
		Host: result.Host{Kernel: "6.18", CPUs: 2, MemoryMiB: 24000, CPUModel: "AMD EPYC", Accelerator: "tcg", AcceleratorReason: "kvm_pvm",
			Versions: result.Versions{Podvm: "dev", QEMU: "QEMU 7.2", Containerd: "2.4.2", Runc: "1.5.2", Runsc: "runsc x"},
			VM:       result.VM{VCPUs: 1, MemoryMiB: 256, TBSizeMiB: 64, SharedFS: "virtiofs", Kernel: "6.1"}},
		Boot: boot,
		Startup: &result.Startup{
			Serial: []result.HandlerStartup{
				{Handler: "runc", Runtime: "runc", ToFirstOutput: sum(120, 130), MedianRatioToRunc: 1, SamplesMs: []float64{120, 130}},
				{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", ToFirstOutput: sum(1900, 2000), MedianRatioToRunc: 15.6, SamplesMs: []float64{1900, 2000}},
			},
			Parallel: []result.HandlerParallel{
				{Handler: "runc", Runtime: "runc", Pods: 2, WallMs: 180, ToFirstOutput: sum(170, 175), WallRatioToRunc: 1, SamplesMs: []float64{170, 175}},
				{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Pods: 2, WallMs: 2500, ToFirstOutput: sum(2400, 2480), WallRatioToRunc: 13.9, SamplesMs: []float64{2400, 2480}},
			},
		},
		Density: &result.Density{Handlers: []result.HandlerDensity{
			{Handler: "runc", Runtime: "runc", Requested: 25, Reached: 25, StartSamples: []float64{100, 110},
				Points: []result.DensityPoint{{Pods: 25, PerPod: result.PodMemory{ShimPSS: 8, ContainersPSS: 3, Total: 11, HostOverhead: 8}, ShimPSS: sum(8)}}},
			{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Requested: 25, Reached: 25, StartMs: sum(1700, 1800), StartSamples: []float64{1700, 1800},
				Points: []result.DensityPoint{{Pods: 1, PerPod: pm, ShimPSS: sum(17)}, {Pods: 25, PerPod: pm, ShimPSS: sum(9, 9.4), HostOverhead: sum(113),
					IdleCPUMillicoresPerPod: 22, IdleCPUByPart: &result.IdleCPU{Shim: 0.5, VMMVCPU: 15, VMMOther: 6, Virtiofsd: 0.25, Containers: 0.25}}}},
		}},
		Exec: &result.Exec{Runs: 2, Command: []string{"true"}, Handlers: []result.HandlerExec{
			{HandlerTimes: result.HandlerTimes{Handler: "runc", Runtime: "runc", Time: sum(40, 50), MedianRatioToRunc: 1, SamplesMs: []float64{40, 50}},
				P90RatioToRunc: 1},
			{HandlerTimes: result.HandlerTimes{Handler: "podvm", Runtime: "podvm", Time: sum(240, 260), MedianRatioToRunc: 5.56, SamplesMs: []float64{240, 260}},
				Accelerator: "tcg", P90RatioToRunc: 5.3},
		}},
		Probe: &result.Probe{Requests: 2, IntervalMs: 100, LoadPods: 4, TimeoutMs: 10000, KubeletTimeoutMs: 1000, Handlers: []result.HandlerProbe{
			{Handler: "runc", Runtime: "runc", Phases: []result.ProbePhase{
				{Name: result.ProbeIdle, Connect: sum(0.2, 0.3), Response: sum(0.7, 0.9), MedianRatioToRunc: 1, P90RatioToRunc: 1},
				{Name: result.ProbeLoadBusy, Connect: sum(0.2, 0.3), Response: sum(0.9, 3.4), MedianRatioToRunc: 1, P90RatioToRunc: 1}}},
			{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Phases: []result.ProbePhase{
				{Name: result.ProbeIdle, Connect: sum(1, 2), Response: sum(4, 6), MedianRatioToRunc: 6.25, P90RatioToRunc: 6.9},
				{Name: result.ProbeLoadBusy, Ping: sum(20, 40), Connect: sum(30, 900), Response: sum(300, 1500), OverKubeletTimeout: 1,
					MedianRatioToRunc: 415, P90RatioToRunc: 450, Failures: []string{"timeout"}}}},
		}},
		Leaks: []string{},
	}
}

func TestTargets(t *testing.T) {
	const boot, shim, density, gvisor = "boot to agent ready (VMM spawn to the agent's first answer), median",
		"shim PSS per pod", "concurrent idle podvm pods, no failure", "gVisor (runsc) beside runc and podvm"
	const exec, probe = "CRI exec of `true` in a running pod, podvm over runc, median",
		"HTTP probe into a pod while other pods start and busy-loop, p90 and max"
	for _, tc := range []struct {
		name   string
		change func(r *result.Results)
		want   map[string]string
	}{
		{"as measured", func(*result.Results) {},
			map[string]string{boot: result.TargetMissed, shim: result.TargetMet, density: result.TargetMet, gvisor: result.TargetReported,
				exec: result.TargetMissed, probe: result.TargetReported}},
		{"exec within 3x", func(r *result.Results) { r.Exec.Handlers[1].MedianRatioToRunc = 2.9 }, map[string]string{exec: result.TargetMet}},
		{"exec failed on podvm", func(r *result.Results) {
			r.Exec.Handlers[1].Time, r.Exec.Handlers[1].MedianRatioToRunc = stats.Summary{}, 0
		}, map[string]string{exec: result.TargetNotMeasured}},
		{"probe idle only", func(r *result.Results) {
			for i := range r.Probe.Handlers {
				r.Probe.Handlers[i].Phases = r.Probe.Handlers[i].Phases[:1]
			}
		}, map[string]string{probe: result.TargetNotMeasured}},
		{"fast boot, fat shim", func(r *result.Results) {
			r.Boot.BootToAgentReady = stats.Summarize([]float64{400, 450})
			r.Density.Handlers[1].Points[1].ShimPSS = stats.Summarize([]float64{9, 16})
		}, map[string]string{boot: result.TargetMet, shim: result.TargetMissed}},
		{"density failed", func(r *result.Results) {
			r.Density.Handlers[1].Reached, r.Density.Handlers[1].Failure = 21, "pod 22: out of memory"
		}, map[string]string{density: result.TargetMissed}},
		{"too few asked", func(r *result.Results) { r.Density.Handlers[1].Reached = 3 }, map[string]string{density: result.TargetMissed}},
		{"nothing run", func(r *result.Results) {
			r.Boot, r.Startup, r.Density, r.Exec, r.Probe, r.Host.Versions.Runsc = nil, nil, nil, nil, nil, ""
		}, map[string]string{boot: result.TargetNotMeasured, shim: result.TargetNotMeasured, density: result.TargetNotMeasured,
			gvisor: result.TargetNotMeasured, exec: result.TargetNotMeasured, probe: result.TargetNotMeasured}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sample()
			tc.change(r)
			// 8, and issue 16's: three for the one podvm mode, one template against none.
			checkTargets(t, Targets(r), 12, tc.want)
		})
	}
}

// checkTargets checks that ts are n targets and that the named ones have
// the wanted statuses.
func checkTargets(t *testing.T, ts []result.Target, n int, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, x := range ts {
		got[x.Name] = x.Status
	}
	if len(got) != n {
		t.Errorf("%d targets, want %d: %v", len(got), n, got)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
}

func TestSummary(t *testing.T) {
	r := sample()
	r.Targets = Targets(r)
	md := Summary(r)
	for _, want := range []string{
		"# podvm benchmarks", "**TCG**", "Every time below is a TCG",
		"| boot to agent ready", "680 ms median",
		"| vmm_spawn_to_kernel_entry | vmm_spawned | guest_kernel_entry | mapped | 250 ms |",
		"| runsc (gVisor) | 2 | 210 ms",
		"| podvm (TCG) | 2 | 1.95 s | 1.99 s | 15.60x |",
		"| podvm (TCG) | 25 / 25 | 9.0 | 166.0 |",
		// Anchors quoted beside ours, the accelerator stated.
		"| Kata shim PSS per pod | about 18 MB | 9.0 MiB (25 pods) |",
		"0.39 s (QEMU 0.71 s)", "600 Mi (512 Mi VM + ~88 Mi host)", "81-280 ms", "(TCG)",
		"![density](density.png)",
		// The idle CPU by process, podvm only (runc's point has no split).
		"| runtime | shim | VMM vCPU | VMM rest | virtiofsd | containers |",
		"| podvm (TCG) | 0.5 | 15.0 | 6.0 | 0.2 | 0.2 |",
		// Exec and probes, podvm beside runc with its accelerator.
		"| podvm (TCG) | 2 | 250 ms | 258 ms | 260 ms | 5.56x | 5.30x | 0 |",
		"| runc | idle | 2 | 0.8 ms | 0.9 ms | 0.9 ms | 0.0 ms | 0.0 ms | 0.2 ms |",
		"| podvm (TCG) | load_busy | 2 | 900 ms | 1.38 s | 1.50 s | 30 ms | 38 ms | 465 ms | 813 ms | 415.00x | 450.00x | 1 | 1 |",
		"5.56x (medians: runc 45 ms, podvm (TCG) 250 ms; 2 execs each)",
		"podvm (TCG) load_busy p90 1.38 s max 1.50 s (1 over 1 s, 1 failed)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "## Left behind") {
		t.Error("a clean run reports leaks")
	}
	r.Leaks = []string{"process 42: qemu"}
	if !strings.Contains(Summary(r), "- process 42: qemu") {
		t.Error("leaks not listed")
	}
}

func TestMs(t *testing.T) {
	for v, want := range map[float64]string{0: "0 ms", 850.4: "850 ms", 1620: "1.62 s"} {
		if got := ms(v); got != want {
			t.Errorf("ms(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestPlots(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(r *result.Results)
		want   []string
	}{
		{"everything", func(*result.Results) {}, []string{"boot-phases.png", "ctr-run-true.png", "startup.png", "density.png", "density-start.png"}},
		{"boot only", func(r *result.Results) { r.Startup, r.Density = nil, nil }, []string{"boot-phases.png", "ctr-run-true.png"}},
		{"no samples", func(r *result.Results) {
			r.Boot.Samples, r.Boot.CtrRunTrue, r.Startup, r.Density = nil, nil, nil, nil
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sample()
			tc.change(r)
			dir := t.TempDir()
			files, err := Plots(dir, r)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(files, ",") != strings.Join(tc.want, ",") {
				t.Errorf("plots %v, want %v", files, tc.want)
			}
			for _, f := range files {
				fh, err := os.Open(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				img, err := png.Decode(fh)
				fh.Close()
				if err != nil {
					t.Errorf("%s is not a PNG: %v", f, err)
					continue
				}
				if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 150 {
					t.Errorf("%s is %v", f, b)
				}
			}
		})
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	r := sample()
	r.Targets = Targets(r)
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	back, err := result.Read(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Boot.BootToAgentReady.Median != 680 || len(back.Targets) != 12 {
		t.Errorf("read back %+v", back.Boot.BootToAgentReady)
	}
	for _, f := range []string{"summary.md", "density.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}
