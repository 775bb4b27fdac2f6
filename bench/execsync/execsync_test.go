package execsync

import (
	"errors"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

func TestRuns(t *testing.T) {
	var r runs
	r.add(40*time.Millisecond, nil)
	r.add(60*time.Millisecond, nil)
	r.add(0, errors.New("ExecSync: exit code 1"))
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
