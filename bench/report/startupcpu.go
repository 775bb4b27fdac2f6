package report

import (
	"fmt"

	"github.com/podvm/podvm/bench/result"
)

// startupCPU is, per handler, where the host's CPU time went per pod
// started one at a time and all at once, and each step of a pod's start
// both ways: what grows under concurrency.
func (w *markdown) startupCPU(st *result.Startup) {
	for _, par := range st.Parallel {
		var ser *result.HandlerStartup
		for i := range st.Serial {
			if st.Serial[i].Handler == par.Handler {
				ser = &st.Serial[i]
			}
		}
		if par.CPU == nil && len(par.Steps) == 0 {
			continue
		}
		w.p("\n#### %s: one pod at a time against %d at once\n\n", par.Handler, par.Pods)
		if par.CPU != nil {
			w.cpuTable(ser, par)
		}
		if len(par.Steps) > 0 {
			w.stepTable(ser, par)
		}
	}
}

// cpuTable is the host's CPU seconds per pod by component.
func (w *markdown) cpuTable(ser *result.HandlerStartup, par result.HandlerParallel) {
	serial := map[string]float64{}
	serialNote := "—"
	if ser != nil && ser.CPU != nil {
		for _, c := range ser.CPU.Components {
			serial[c.Name] = c.PerPodSeconds
		}
		serialNote = ms(ser.CPU.WindowMs/float64(max(ser.CPU.Pods, 1))) + " per pod"
	}
	w.p("Host CPU seconds per pod, by component (windows: serial %s; at once %s for %d pods):\n\n", serialNote, ms(par.CPU.WindowMs), par.CPU.Pods)
	w.p("| component | serial, per pod | at once, per pod | at once, all pods |\n| --- | --- | --- | --- |\n")
	for _, c := range par.CPU.Components {
		s := "—"
		if v, ok := serial[c.Name]; ok {
			s = seconds(v)
		}
		w.p("| %s | %s | %s | %s |\n", c.Name, s, seconds(c.PerPodSeconds), seconds(c.Seconds))
	}
	w.p("\n")
}

// stepTable is each step of a pod's start, serial and at once.
func (w *markdown) stepTable(ser *result.HandlerStartup, par result.HandlerParallel) {
	serial := map[string]result.StartStep{}
	if ser != nil {
		for _, s := range ser.Steps {
			serial[s.From+">"+s.To] = s
		}
	}
	w.p("Steps of a pod's start (host clock):\n\n| from | to | serial median | at once median | at once max |\n| --- | --- | --- | --- | --- |\n")
	for _, s := range par.Steps {
		sm := "—"
		if x, ok := serial[s.From+">"+s.To]; ok {
			sm = ms(x.Duration.Median)
		}
		w.p("| %s | %s | %s | %s | %s |\n", s.From, s.To, sm, ms(s.Duration.Median), ms(s.Duration.Max))
	}
	w.p("\n")
}

// seconds is CPU seconds to the 10 ms of /proc's clock ticks.
func seconds(v float64) string { return fmt.Sprintf("%.2f s", v) }
