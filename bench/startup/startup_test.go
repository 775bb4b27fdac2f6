package startup

import (
	"errors"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

func TestSerialRuns(t *testing.T) {
	var s serialRuns
	s.add("a", "a-app", benchhost.PodTimes{RunPodSandbox: 100 * time.Millisecond, CreateContainer: 10 * time.Millisecond,
		StartContainer: 50 * time.Millisecond, Output: 5 * time.Millisecond, Total: 165 * time.Millisecond}, nil)
	s.add("b", "", benchhost.PodTimes{Total: 300 * time.Millisecond}, nil)
	s.add("", "", benchhost.PodTimes{}, errors.New("RunPodSandbox: boom"))
	r := s.result("podvm")
	if r.Runs != 3 || r.ToFirstOutput.N != 2 || r.ToFirstOutput.Median != 232.5 || len(r.Failures) != 1 {
		t.Errorf("result %+v", r)
	}
	if r.RunPodSandbox.Max != 100 || r.Output.Max != 5 || r.Runtime != "podvm" {
		t.Errorf("phases %+v %+v", r.RunPodSandbox, r.Output)
	}
	if len(s.ids) != 2 {
		t.Errorf("sandbox ids %v, want the two created", s.ids)
	}
	if len(s.apps) != 1 || s.apps[0] != "a-app" {
		t.Errorf("app ids %v, want the one created", s.apps)
	}
}

func TestGuestCreates(t *testing.T) {
	ms := time.Millisecond
	marks := map[string]map[string]time.Duration{
		"pod1": {"create_begin": 0, "bundle_written": 10 * ms, "runtime_created": 190 * ms, "create_end": 200 * ms, "start_begin": 250 * ms, "start_end": 260 * ms},
		"app1": {"create_begin": 0, "bundle_written": 5 * ms, "runtime_created": 85 * ms, "create_end": 90 * ms, "start_begin": 100 * ms, "start_end": 110 * ms},
	}
	got := guestCreates(marks, []string{"pod1", "pod2"}, []string{"app1"})
	if len(got) != 2 || got[0].Container != "pause" || got[1].Container != "app" {
		t.Fatalf("creates %+v", got)
	}
	if got[0].OCICreate.Median != 180 || got[0].CreateStart.Median != 210 || got[0].CreateStart.N != 1 {
		t.Errorf("pause %+v", got[0])
	}
	if got[1].OCICreate.Median != 80 || got[1].CreateStart.Median != 100 {
		t.Errorf("app %+v", got[1])
	}
}

func TestSetRatios(t *testing.T) {
	s := &result.Startup{
		Serial: []result.HandlerStartup{
			{Handler: "runc", ToFirstOutput: stats.Summary{Median: 100}},
			{Handler: "podvm", ToFirstOutput: stats.Summary{Median: 1500}},
		},
		Parallel: []result.HandlerParallel{
			{Handler: "runc", WallMs: 200, ToFirstOutput: stats.Summary{Median: 150}},
			{Handler: "podvm", WallMs: 5000, ToFirstOutput: stats.Summary{Median: 3000}},
		},
	}
	setRatios(s)
	if s.Serial[0].MedianRatioToRunc != 1 || s.Serial[1].MedianRatioToRunc != 15 {
		t.Errorf("serial ratios %v %v", s.Serial[0].MedianRatioToRunc, s.Serial[1].MedianRatioToRunc)
	}
	if p := s.Parallel[1]; p.WallRatioToRunc != 25 || p.MedianRatioToRunc != 20 {
		t.Errorf("parallel ratios %+v", p)
	}
	// Without runc there is nothing to compare with.
	alone := &result.Startup{Serial: []result.HandlerStartup{{Handler: "podvm", ToFirstOutput: stats.Summary{Median: 1500}}}}
	setRatios(alone)
	if alone.Serial[0].MedianRatioToRunc != 0 {
		t.Errorf("ratio without runc %v", alone.Serial[0].MedianRatioToRunc)
	}
}
