package report

import (
	"fmt"
	"strings"

	"github.com/podvm/podvm/bench/result"
)

// anchor is a published figure (the project design's "Anchors") and ours
// beside it.
type anchor struct{ what, published, ours string }

// Summary is the Markdown summary of r: host, targets, the three
// benchmarks, and the published anchors beside our figures.
func Summary(r *result.Results) string {
	var w markdown
	w.host(r)
	w.targets(r.Targets)
	if r.Factory != nil {
		w.factory(r)
	}
	if bt := r.Boot; bt != nil {
		w.boot(bt)
	}
	if st := r.Startup; st != nil {
		w.startup(st)
	}
	if e := r.Exec; e != nil {
		w.exec(e)
	}
	if pr := r.Probe; pr != nil {
		w.probe(pr)
	}
	if d := r.Density; d != nil {
		w.density(d)
	}
	w.anchors(r)
	if len(r.Leaks) > 0 {
		w.p("\n## Left behind\n\n")
		for _, l := range r.Leaks {
			w.p("- %s\n", l)
		}
	}
	return w.String()
}

// markdown is the summary being written, a section per method.
type markdown struct{ strings.Builder }

func (w *markdown) p(format string, args ...any) { fmt.Fprintf(w, format, args...) }

// host is the title and the paragraph on the run, host, pod VMs and versions.
func (w *markdown) host(r *result.Results) {
	p, h := w.p, r.Host
	p("# podvm benchmarks\n\n")
	p("%s to %s. Host: %s, %d CPUs, %.0f MiB, kernel %s. Pod VMs: **%s** (%s); %d vCPU, %d MiB, tb-size %d MiB, %s, guest kernel %s.\n\n",
		r.StartedAt.Format("2006-01-02 15:04:05Z"), r.FinishedAt.Format("15:04:05Z"), h.CPUModel, h.CPUs, h.MemoryMiB, h.Kernel,
		strings.ToUpper(h.Accelerator), h.AcceleratorReason, h.VM.VCPUs, h.VM.MemoryMiB, h.VM.TBSizeMiB, h.VM.SharedFS, h.VM.Kernel)
	v := h.Versions
	p("podvm %s, %s, containerd %s, runc %s", v.Podvm, v.QEMU, v.Containerd, v.Runc)
	if v.Runsc != "" {
		p(", %s", v.Runsc)
	}
	p(".\n\n")
	if h.Accelerator == "tcg" {
		p("Every time below is a TCG (software emulation) figure: compare it with runc in the same run, not with published KVM figures.\n\n")
	}
}

func (w *markdown) targets(targets []result.Target) {
	w.p("## Targets\n\n| target | goal | measured | status |\n| --- | --- | --- | --- |\n")
	for _, t := range targets {
		w.p("| %s | %s | %s | %s |\n", t.Name, t.Goal, dash(t.Measured), t.Status)
	}
	w.p("\n")
}

func (w *markdown) boot(bt *result.Boot) {
	p := w.p
	p("## Boot (`podvm bench boot`, %d runs, %s)\n\n", bt.Runs, bootAccelerator(bt))
	p("VMM spawn to agent ready: median %s, p90 %s (guest clock, kernel entry to agent serving: median %s). `ctr run` to first output: median %s, p90 %s.\n\n",
		ms(bt.BootToAgentReady.Median), ms(bt.BootToAgentReady.P90), ms(bt.GuestBootToAgentReady.Median),
		ms(bt.ToFirstOutput.Median), ms(bt.ToFirstOutput.P90))
	p("| phase | from | to | clock | median | p90 |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, ph := range bt.Phases {
		p("| %s | %s | %s | %s | %s | %s |\n", ph.Name, ph.From, ph.To, ph.Clock, ms(ph.Duration.Median), ms(ph.Duration.P90))
		subs := map[string][]result.Phase{"container_create_start": bt.ContainerPhases, "output_to_exit": bt.TeardownPhases}[ph.Name]
		for _, sub := range subs {
			p("| ↳ %s | %s | %s | %s | %s | %s |\n", sub.Name, sub.From, sub.To, sub.Clock, ms(sub.Duration.Median), ms(sub.Duration.P90))
		}
	}
	p("\n`ctr run --rm IMAGE ID true`, whole, same run:\n\n| runtime | runs | median | p90 | / runc | failures |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, t := range bt.CtrRunTrue {
		p("| %s | %d | %s | %s | %.2fx | %d |\n", t.Runtime, t.Time.N, ms(t.Time.Median), ms(t.Time.P90), t.MedianRatioToRunc, len(t.Failures))
	}
	p("\n![boot phases](boot-phases.png)\n![ctr run true](ctr-run-true.png)\n\n")
}

func (w *markdown) startup(st *result.Startup) {
	p := w.p
	p("## Pod startup through CRI (`podvm bench startup`)\n\nRunPodSandbox + CreateContainer + StartContainer until the container's output is in its CRI log.\n\n")
	p("| runtime | pods | median | p90 | / runc | RunPodSandbox | CreateContainer | StartContainer | to output | failures |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range st.Serial {
		p("| %s | %d | %s | %s | %.2fx | %s | %s | %s | %s | %d |\n", withAccel(s.Runtime, s.Accelerator), s.ToFirstOutput.N,
			ms(s.ToFirstOutput.Median), ms(s.ToFirstOutput.P90), s.MedianRatioToRunc, ms(s.RunPodSandbox.Median),
			ms(s.CreateContainer.Median), ms(s.StartContainer.Median), ms(s.Output.Median), len(s.Failures))
	}
	if len(st.Parallel) > 0 {
		p("\nPods started at once:\n\n| runtime | pods | all out after | / runc | each: median | p90 | failures |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, s := range st.Parallel {
			p("| %s | %d | %s | %.2fx | %s | %s | %d |\n", withAccel(s.Runtime, s.Accelerator), s.Pods, ms(s.WallMs),
				s.WallRatioToRunc, ms(s.ToFirstOutput.Median), ms(s.ToFirstOutput.P90), len(s.Failures))
		}
		w.startupCPU(st)
	}
	p("\n![startup](startup.png)\n\n")
}

func (w *markdown) density(d *result.Density) {
	p := w.p
	p("## Density (`podvm bench density`)\n\nIdle pods (a sandbox and `sleep`), per pod, at the largest number reached (PSS, MiB; idle CPU in millicores):\n\n")
	p("| runtime | pods reached / asked | shim | VMM: all | guest RAM | TCG cache | images | rest | virtiofsd (guest RAM) | containers | guest RAM touched | host overhead (no TCG) | pod cgroup | MemAvailable drop | idle CPU |\n")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, hd := range d.Handlers {
		if len(hd.Points) == 0 {
			p("| %s | %d / %d | — | | | | | | | | | | | | |\n", hd.Runtime, hd.Reached, hd.Requested)
			continue
		}
		m := hd.Points[len(hd.Points)-1].PerPod
		pt := hd.Points[len(hd.Points)-1]
		p("| %s | %d / %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f (%.1f) | %.1f | %.1f | %.1f (%.1f) | %.1f | %.1f | %.0fm |\n",
			withAccel(hd.Runtime, hd.Accelerator), hd.Reached, hd.Requested, m.ShimPSS, m.VMMPSS, m.VMMGuestRAMPSS, m.VMMTCGCachePSS,
			m.VMMImagesPSS, m.VMMOtherPSS, m.VirtiofsdPSS, m.VirtiofsdGuestRAMPSS, m.ContainersPSS, m.GuestRAMTouched,
			m.HostOverhead, m.HostOverheadExclTCG, m.CgroupCharge, pt.MemAvailableDropPerPodMiB, pt.IdleCPUMillicoresPerPod)
	}
	for _, hd := range d.Handlers {
		if hd.Failure != "" {
			p("\n%s stopped at %d pods: %s\n", hd.Runtime, hd.Reached, hd.Failure)
		}
	}
	w.idleCPU(d)
	p("\n![density](density.png)\n\n")
}

// idleCPU splits the idle pods' host CPU by process, the VMM into its
// vCPU threads and the rest.
func (w *markdown) idleCPU(d *result.Density) {
	header := false
	for _, hd := range d.Handlers {
		if len(hd.Points) == 0 || hd.Points[len(hd.Points)-1].IdleCPUByPart == nil {
			continue
		}
		if !header {
			w.p("\nIdle CPU by process, millicores per pod:\n\n| runtime | shim | VMM vCPU | VMM rest | virtiofsd | containers |\n| --- | --- | --- | --- | --- | --- |\n")
			header = true
		}
		c := hd.Points[len(hd.Points)-1].IdleCPUByPart
		w.p("| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", withAccel(hd.Runtime, hd.Accelerator), c.Shim, c.VMMVCPU, c.VMMOther, c.Virtiofsd, c.Containers)
	}
}

func (w *markdown) anchors(r *result.Results) {
	h := r.Host
	w.p("## Published anchors beside ours\n\nOurs: %s, on this host, %d vCPU / %d MiB pod VMs. Published figures are KVM on server hardware unless noted.\n\n",
		strings.ToUpper(h.Accelerator), h.VM.VCPUs, h.VM.MemoryMiB)
	w.p("| what | published | ours |\n| --- | --- | --- |\n")
	for _, a := range anchors(r) {
		w.p("| %s | %s | %s |\n", a.what, a.published, dash(a.ours))
	}
}

// anchors pairs each published figure with ours.
func anchors(r *result.Results) []anchor {
	accel := strings.ToUpper(r.Host.Accelerator)
	var toOutput, ctrTrue, runscTrue, guestInit, bootAgent string
	if b := r.Boot; b != nil {
		if b.ToFirstOutput.N > 0 {
			toOutput = fmt.Sprintf("%s `ctr run` to first output, median (%s)", ms(b.ToFirstOutput.Median), accel)
			guestInit = fmt.Sprintf("%s guest kernel entry to agent start, median (%s)", ms(phaseMedian(b, "kernel_to_agent_start")), accel)
			bootAgent = fmt.Sprintf("%s VMM spawn to agent ready", ms(b.BootToAgentReady.Median))
		}
		for _, t := range b.CtrRunTrue {
			if t.Handler == "runsc" && t.Time.N > 0 {
				runscTrue = fmt.Sprintf("%s `ctr run --rm true` whole (runc %s)", ms(t.Time.Median), ms(handlerMedian(b, "runc")))
			}
			if t.Handler == "podvm" && t.Time.N > 0 {
				ctrTrue = fmt.Sprintf("%s `ctr run --rm true` whole, %.2fx runc", ms(t.Time.Median), t.MedianRatioToRunc)
			}
		}
	}
	var criSerial, criParallel string
	if s := r.Startup; s != nil {
		for _, x := range s.Serial {
			if x.Handler == "podvm" && x.ToFirstOutput.N > 0 {
				criSerial = fmt.Sprintf("%s serial median (%.2fx runc; %s)", ms(x.ToFirstOutput.Median), x.MedianRatioToRunc, accel)
			}
		}
		for _, x := range s.Parallel {
			if x.Handler == "podvm" && x.WallMs > 0 {
				criParallel = fmt.Sprintf("%s for %d at once (%.2fx runc)", ms(x.WallMs), x.Pods, x.WallRatioToRunc)
			}
		}
	}
	var footprint, shim, aks, vmm, rate string
	if d := densityOf(r, "podvm"); d != nil && len(d.Points) > 0 {
		pt := d.Points[len(d.Points)-1]
		m := pt.PerPod
		footprint = fmt.Sprintf("%.0f MiB shim + VMM + virtiofsd PSS with guest RAM (%.0f MiB touched), %.0f MiB without it; %.0f MiB without the TCG cache too (%d pods, %s)",
			m.ShimPSS+m.VMMPSS+m.VirtiofsdPSS, m.GuestRAMTouched, m.HostOverhead, m.HostOverheadExclTCG, pt.Pods, accel)
		shim = fmt.Sprintf("%.1f MiB (%d pods)", m.ShimPSS, pt.Pods)
		aks = fmt.Sprintf("%d MiB VM + %.0f MiB host (%.0f MiB without the TCG cache)", r.Host.VM.MemoryMiB, m.HostOverhead, m.HostOverheadExclTCG)
		vmm = fmt.Sprintf("%.1f MiB QEMU PSS outside guest RAM, TCG cache and boot images", m.VMMOtherPSS)
	}
	if s := r.Startup; s != nil {
		for _, x := range s.Parallel {
			if x.Handler == "podvm" && x.WallMs > 0 {
				rate = fmt.Sprintf("%.2f pods/core/s (%d pods with a container each, at once through CRI, %d cores)",
					float64(x.Pods)/(x.WallMs/1000)/float64(r.Host.CPUs), x.Pods, r.Host.CPUs)
			}
		}
	}
	cri := criSerial
	if criParallel != "" {
		cri += " / " + criParallel
	}
	fc := strings.Join(nonEmpty(guestInit, vmm, rate), "; ")
	return []anchor{
		{"Kata + Cloud Hypervisor, time to workload", "0.39 s (QEMU 0.71 s), Kata CI baseline", strings.Join(nonEmpty(toOutput, bootAgent), "; ")},
		{"Kata host footprint per pod (VMM + virtiofsd + shim PSS)", "about 124 MiB", footprint},
		{"Kata shim PSS per pod", "about 18 MB", shim},
		{"Kata pod + container via CRI, serial / 50 parallel", "850-950 ms / 1.6-1.8 s", cri},
		{"AKS Pod Sandboxing overhead per pod", "600 Mi (512 Mi VM + ~88 Mi host)", aks},
		{"Firecracker", "<= 125 ms to guest init, <= 5 MiB VMM overhead, 5 VMs/core/s", fc},
		{"gVisor create + start", "81-280 ms", runscTrue},
		{"podvm `ctr run` of `true`", "(our own target: a ratio to runc)", ctrTrue},
	}
}

func phaseMedian(b *result.Boot, name string) float64 {
	for _, p := range b.Phases {
		if p.Name == name {
			return p.Duration.Median
		}
	}
	return 0
}

func handlerMedian(b *result.Boot, handler string) float64 {
	for _, t := range b.CtrRunTrue {
		if t.Handler == handler {
			return t.Time.Median
		}
	}
	return 0
}

func nonEmpty(xs ...string) []string {
	var out []string
	for _, x := range xs {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// ms formats milliseconds: "850 ms", "1.62 s".
func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func withAccel(runtime, accel string) string {
	if accel == "" {
		return runtime
	}
	return fmt.Sprintf("%s (%s)", runtime, strings.ToUpper(accel))
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
