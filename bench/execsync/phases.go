package execsync

import (
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/bench/stats"
)

// call is one timed ExecSync: when it was made and when it returned.
type call struct{ start, end time.Time }

// phaseDef is one phase of a podvm exec: from one mark to the next on the
// same clock. Host marks are the benchmark's ("call", "call_returned") and
// the shim's (shimlog.ExecEnded.Host); guest marks, "guest_" and a
// contract.ProcessMarks name, are the agent's.
type phaseDef struct{ name, from, to, clock string }

// phases split a podvm exec; the guest ones ("↳" in the summary) lie
// within the host phase before them. docs/benchmarks.md ("Exec") says
// what each holds.
var phases = []phaseDef{
	{"call_to_shim_start", "call", "exec_begin", "host"},
	{"exec_process", "exec_begin", "exec_answered", "host"},
	{"guest_runtime_exec", "guest_exec_begin", "guest_exec_running", "guest"},
	{"relay_start", "exec_answered", "relay_started", "host"},
	{"run_to_exit_answer", "relay_started", "wait_answered", "host"},
	{"guest_process_run", "guest_exec_running", "guest_exited", "guest"},
	{"guest_exit_to_answer", "guest_exited", "guest_wait_answer", "guest"},
	{"output_drain", "wait_answered", "drained", "host"},
	{"exit_to_caller", "drained", "call_returned", "host"},
}

// execPhases summarizes the phases of the timed execs of container id,
// matched to calls by when the shim began each. Execs the shim did not
// log (it logs them at debug level only) leave it empty.
func execPhases(l *shimlog.Log, id string, calls []call) []result.Phase {
	var samples []map[string]float64
	for _, e := range l.Execs {
		if e.Container != id {
			continue
		}
		for _, c := range calls {
			if begin := e.Host["exec_begin"]; !begin.Before(c.start) && !begin.After(c.end) {
				samples = append(samples, execMarks(e, c))
				break
			}
		}
	}
	if len(samples) == 0 {
		return nil
	}
	var out []result.Phase
	for _, p := range phases {
		var xs []float64
		for _, s := range samples {
			from, ok1 := s[p.from]
			to, ok2 := s[p.to]
			if ok1 && ok2 {
				xs = append(xs, to-from)
			}
		}
		out = append(out, result.Phase{Name: p.name, From: p.from, To: p.to, Clock: p.clock, Duration: stats.Summarize(xs)})
	}
	return out
}

// execMarks are one exec's marks in ms: host marks since the call, guest
// marks on the guest's clock (phases never mix the two).
func execMarks(e shimlog.ExecEnded, c call) map[string]float64 {
	m := map[string]float64{"call": 0, "call_returned": result.Ms(c.end.Sub(c.start))}
	for name, at := range e.Host {
		m[name] = result.Ms(at.Sub(c.start))
	}
	for name, d := range e.Guest {
		m["guest_"+name] = result.Ms(d)
	}
	return m
}
