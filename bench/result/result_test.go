package result

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/stats"
)

// full is a Results with every field set, so that every key of the schema
// appears in its JSON.
func full() *Results {
	s := stats.Summary{N: 3, Min: 1, Median: 2, P90: 2.8, Max: 3, Mean: 2}
	pm := PodMemory{ShimPSS: 1, VMMPSS: 2, VMMGuestRAMPSS: 3, VMMTCGCachePSS: 4, VMMImagesPSS: 5, VMMOtherPSS: 6,
		VirtiofsdPSS: 7, VirtiofsdGuestRAMPSS: 8, ContainersPSS: 9, GuestRAMTouched: 10, Total: 11,
		HostOverhead: 12, HostOverheadExclTCG: 13, CgroupCharge: 14}
	vms := &PodVMStarts{FactoryMode: "template", VMMSpawnToAgentReady: s, Cloned: 2, Fallbacks: 1, FirstFallback: "f"}
	cpu := &CPUUse{Pods: 2, WindowMs: 1, Components: []CPUComponent{{Name: "vm_vcpus", Seconds: 2, PerPodSeconds: 1}}}
	steps := []StartStep{{From: "a", To: "b", Duration: s}}
	return &Results{
		Schema: Schema, StartedAt: time.Unix(1, 0).UTC(), FinishedAt: time.Unix(2, 0).UTC(),
		Host: Host{Kernel: "6.18", CPUs: 2, MemoryMiB: 1024, CPUModel: "cpu", Accelerator: "tcg", AcceleratorReason: "why",
			Versions: Versions{Podvm: "v", QEMU: "q", Containerd: "c", Runc: "r", Runsc: "s"},
			VM:       VM{VCPUs: 1, MemoryMiB: 256, TBSizeMiB: 64, SharedFS: "virtiofs", Kernel: "6.1"}},
		Boot: &Boot{Runs: 3,
			Phases:           []Phase{{Name: "p", From: "a", To: "b", Clock: "host", Duration: s}},
			BootToAgentReady: s, GuestBootToAgentReady: s, ToFirstOutput: s,
			Samples:    []BootSample{{Accelerator: "tcg", Transport: "serial", Marks: map[string]float64{"ctr_started": 0}, TotalMs: 1}},
			CtrRunTrue: []HandlerTimes{{Handler: "runc", Runtime: "runc", Time: s, MedianRatioToRunc: 1, SamplesMs: []float64{1}, Failures: []string{"f"}}},
		},
		Startup: &Startup{
			Serial: []HandlerStartup{{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Runs: 3, ToFirstOutput: s, RunPodSandbox: s,
				CreateContainer: s, StartContainer: s, Output: s, MedianRatioToRunc: 2, SamplesMs: []float64{1}, Failures: []string{"f"}, VMs: vms, CPU: cpu, Steps: steps}},
			Parallel: []HandlerParallel{{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Pods: 3, WallMs: 1, ToFirstOutput: s,
				WallRatioToRunc: 2, MedianRatioToRunc: 2, SamplesMs: []float64{1}, Failures: []string{"f"}, VMs: vms, CPU: cpu, Steps: steps}},
		},
		Density: &Density{Handlers: []HandlerDensity{{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Requested: 3, Reached: 2,
			Failure: "f", StartMs: s, StartSamples: []float64{1},
			Points: []DensityPoint{{Pods: 2, PerPod: pm, ShimPSS: s, HostOverhead: s, MemAvailableDropPerPodMiB: 1, IdleCPUMillicoresPerPod: 1,
				IdleCPUByPart: &IdleCPU{Shim: 1, VMMVCPU: 1, VMMOther: 1, Virtiofsd: 1, Containers: 1}}}}}},
		Exec: &Exec{Runs: 3, Command: []string{"true"}, Handlers: []HandlerExec{{HandlerTimes: HandlerTimes{Handler: "podvm", Runtime: "podvm",
			Time: s, MedianRatioToRunc: 2, SamplesMs: []float64{1}, Failures: []string{"f"}}, Accelerator: "tcg", P90RatioToRunc: 2,
			Phases: []Phase{{Name: "p", From: "a", To: "b", Clock: "host", Duration: s}}}}},
		Probe: &Probe{Requests: 3, IntervalMs: 100, LoadPods: 4, TimeoutMs: 10000, KubeletTimeoutMs: 1000,
			Handlers: []HandlerProbe{{Handler: "podvm", Runtime: "podvm", Accelerator: "tcg", Failures: []string{"f"},
				Phases: []ProbePhase{{Name: ProbeIdle, Ping: s, Connect: s, Response: s, OverKubeletTimeout: 1, MedianRatioToRunc: 2,
					P90RatioToRunc: 2, SamplesMs: []float64{1}, Failures: []string{"f"}}}}}},
		Factory: &Factory{Handlers: map[string]string{"podvm-template": "template"},
			FirstPods: []FirstPod{{Handler: "podvm-template", ToFirstOutputMs: 1, Error: "e"}}},
		Targets: []Target{{Name: "n", Goal: "g", Measured: "m", Status: TargetMet}},
		Leaks:   []string{"l"},
	}
}

// keyPaths lists every key of a JSON document as a dotted path; array
// items are "[]", map keys of marks_ms and factory.handlers are "*".
func keyPaths(prefix string, v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if strings.HasSuffix(prefix, "marks_ms") || prefix == "factory.handlers" {
				p = prefix + ".*"
			}
			out[p] = true
			keyPaths(p, val, out)
		}
	case []any:
		for _, val := range x {
			keyPaths(prefix+"[]", val, out)
		}
	}
}

func schemaKeys(t *testing.T, r *Results) []string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	keyPaths("", doc, set)
	var keys []string
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestSchemaStable compares the schema's keys with testdata/schema.txt:
// a key renamed or dropped fails it. New keys are added to the file (and
// to docs/benchmarks.md), never changed.
func TestSchemaStable(t *testing.T) {
	keys := schemaKeys(t, full())
	golden := filepath.Join("testdata", "schema.txt")
	if os.Getenv("PODVM_UPDATE_GOLDEN") == "1" {
		os.WriteFile(golden, []byte(strings.Join(keys, "\n")+"\n"), 0o644)
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSpace(string(b)), "\n")
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("schema %s changed:\n got %v\nwant %v\n(add keys to %s and docs/benchmarks.md; never rename one)", Schema, keys, want, golden)
	}
}

// TestSchemaDocumented checks that docs/benchmarks.md names every key.
func TestSchemaDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range schemaKeys(t, full()) {
		leaf := k[strings.LastIndexAny(k, ".]")+1:]
		if leaf == "*" {
			continue
		}
		if !strings.Contains(string(doc), "`"+leaf+"`") && !strings.Contains(string(doc), "`"+leaf+"[]`") {
			t.Errorf("docs/benchmarks.md does not document %s (`%s`)", k, leaf)
		}
	}
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	r := full()
	if err := Write(path, r); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("read back differs:\n%+v\n%+v", got, r)
	}
	for name, text := range map[string]string{
		"other schema": `{"schema": "podvm-bench/v0"}`,
		"not JSON":     `{`,
	} {
		p := filepath.Join(t.TempDir(), "r.json")
		os.WriteFile(p, []byte(text), 0o644)
		if _, err := Read(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUnits(t *testing.T) {
	if Ms(1500*time.Microsecond) != 1.5 || MiB(1536) != 1.5 {
		t.Errorf("Ms %v MiB %v", Ms(1500*time.Microsecond), MiB(1536))
	}
}
