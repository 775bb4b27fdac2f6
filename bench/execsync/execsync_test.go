package execsync

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/bench/stats"
)

func TestRuns(t *testing.T) {
	var r runs
	t0 := time.Now()
	r.add(call{t0, t0.Add(40 * time.Millisecond)}, nil)
	r.add(call{t0, t0.Add(60 * time.Millisecond)}, nil)
	r.add(call{}, errors.New("ExecSync: exit code 1"))
	got := r.result("podvm")
	if got.Time.N != 2 || got.Time.Median != 50 || len(got.Failures) != 1 || got.Runtime != "podvm" {
		t.Errorf("result %+v", got)
	}
}

func TestSetRatios(t *testing.T) {
	sum := func(xs ...float64) stats.Summary { return stats.Summarize(xs) }
	for _, tc := range []struct {
		name             string
		handlers         []result.HandlerExec
		wantMed, wantP90 float64
	}{
		{"podvm over runc", []result.HandlerExec{{HandlerTimes: result.HandlerTimes{Handler: "runc", Time: sum(40, 60)}}, {HandlerTimes: result.HandlerTimes{Handler: "podvm", Time: sum(200, 300)}}}, 5, 5},
		{"runc failed every exec", []result.HandlerExec{{HandlerTimes: result.HandlerTimes{Handler: "runc"}}, {HandlerTimes: result.HandlerTimes{Handler: "podvm", Time: sum(200)}}}, 0, 0},
		{"no runc", []result.HandlerExec{{HandlerTimes: result.HandlerTimes{Handler: "podvm", Time: sum(200)}}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &result.Exec{Handlers: tc.handlers}
			SetRatios(e)
			last := e.Handlers[len(e.Handlers)-1]
			if last.MedianRatioToRunc != tc.wantMed || last.P90RatioToRunc != tc.wantP90 {
				t.Errorf("ratios %v %v, want %v %v", last.MedianRatioToRunc, last.P90RatioToRunc, tc.wantMed, tc.wantP90)
			}
			if e.Handlers[0].Handler == "runc" && e.Handlers[0].Time.N > 0 && e.Handlers[0].MedianRatioToRunc != 1 {
				t.Errorf("runc's own ratio %v", e.Handlers[0].MedianRatioToRunc)
			}
		})
	}
}

// TestExecPhases: the shim's lines of the timed execs of the container, and
// only those, are split into phases on their own clocks.
func TestExecPhases(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	gms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	exec := func(container string, at int) shimlog.ExecEnded {
		return shimlog.ExecEnded{Container: container, Exec: "e",
			Host: map[string]time.Time{"exec_begin": ms(at + 10), "exec_answered": ms(at + 110), "relay_started": ms(at + 112),
				"wait_answered": ms(at + 150), "drained": ms(at + 160)},
			Guest: map[string]time.Duration{"exec_begin": gms(5000), "exec_running": gms(5090), "exited": gms(5120), "wait_answer": gms(5121)}}
	}
	l := &shimlog.Log{Execs: []shimlog.ExecEnded{
		exec("c1", 0),       // the warm-up: no timed call
		exec("c1", 1000),    // timed
		exec("other", 1000), // another container's
		exec("c1", 2000),    // timed
	}}
	l.Execs[0].Host["exec_begin"] = ms(-500)
	calls := []call{{ms(1000), ms(1180)}, {ms(2000), ms(2180)}}
	got := map[string]float64{}
	for _, p := range execPhases(l, "c1", calls) {
		if p.Duration.N != 2 {
			t.Errorf("%s over %d execs, want 2", p.Name, p.Duration.N)
		}
		got[p.Name] = p.Duration.Median
	}
	want := map[string]float64{"call_to_shim_start": 10, "exec_process": 100, "guest_runtime_exec": 90, "relay_start": 2,
		"run_to_exit_answer": 38, "guest_process_run": 30, "guest_exit_to_answer": 1, "output_drain": 10, "exit_to_caller": 20}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("phases %v, want %v", got, want)
	}
	if p := execPhases(&shimlog.Log{}, "c1", calls); p != nil {
		t.Errorf("phases without the shim's lines: %v, want none", p)
	}
}
