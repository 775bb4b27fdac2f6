// Package density is `podvm bench density`: idle pods (a sandbox and one
// sleeping container, through CRI) started one after another until the
// requested number or the first failure, for each handler, with what each
// pod costs the host in memory: the PSS of its shim, VMM and virtiofsd
// separately (for runc and runsc, of the shim and the container
// processes), the VMM's split into guest RAM, TCG translation cache, boot
// images and the rest, the guest RAM actually touched, and the pod cgroup's
// charge.
package density

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/podvm/podvm/bench/benchhost"
	"github.com/podvm/podvm/bench/procmem"
	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// Options size the benchmark.
type Options struct {
	// Pods is how many pods each handler tries to run at once.
	Pods int
	// Handlers to measure (default: every handler of the host).
	Handlers []string
	// Settle is how long pods idle before the last measurement; the
	// intermediate ones wait a tenth of it (at least a second).
	Settle   time.Duration
	Progress io.Writer
}

// podTimeout bounds one pod's start.
const podTimeout = 3 * time.Minute

// Run climbs to Pods for each handler, one handler at a time, removing each
// handler's pods before the next begins.
func Run(ctx context.Context, h *benchhost.Host, o Options) (*result.Density, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	handlers := o.Handlers
	if len(handlers) == 0 {
		handlers = h.Handlers
	}
	out := &result.Density{}
	for _, handler := range handlers {
		d, err := climb(ctx, h, handler, o)
		if err != nil {
			return out, err
		}
		out.Handlers = append(out.Handlers, d)
	}
	return out, nil
}

func climb(ctx context.Context, h *benchhost.Host, handler string, o Options) (result.HandlerDensity, error) {
	d := result.HandlerDensity{Handler: handler, Runtime: benchhost.RuntimeName(handler), Requested: o.Pods}
	// The cache mode's pool is full at every reading of MemAvailable
	// (measureFull), so its drop counts the pods' VMs, not the pool's.
	if err := h.WaitCacheRefilled(ctx, handler); err != nil {
		return d, err
	}
	availBefore := benchhost.MemAvailableMiB()
	var pods []*benchhost.Pod
	defer func() {
		for _, p := range pods {
			if err := h.RemovePod(context.WithoutCancel(ctx), p); err != nil {
				fmt.Fprintf(o.Progress, "    remove %s: %v\n", p.Name, err)
			}
		}
	}()
	marks := checkpoints(o.Pods)
	short := max(time.Second, o.Settle/10)
	for i := 1; i <= o.Pods; i++ {
		pctx, cancel := context.WithTimeout(ctx, podTimeout)
		p, t, err := h.StartPod(pctx, handler, fmt.Sprintf("density-%s-%d", handler, i), []string{"sleep", "1000000"}, "")
		cancel()
		if err != nil {
			d.Failure = fmt.Sprintf("pod %d: %v", i, err)
			if p != nil {
				h.RemovePod(context.WithoutCancel(ctx), p)
			}
			fmt.Fprintf(o.Progress, "    %s: pod %d failed: %v\n", handler, i, err)
			break
		}
		pods = append(pods, p)
		d.Reached = i
		d.StartSamples = append(d.StartSamples, result.Ms(t.Total))
		if marks[i] && i < o.Pods {
			sleep(ctx, short)
			pt, err := measureFull(ctx, h, handler, pods, availBefore)
			if err != nil {
				return d, err
			}
			d.Points = append(d.Points, pt)
			progress(o.Progress, handler, pt)
		}
	}
	d.StartMs = stats.Summarize(d.StartSamples)
	if d.Reached > 0 {
		cpu0, t0 := podsCPUSeconds(h, pods), time.Now()
		sleep(ctx, o.Settle)
		cpu1, t1 := podsCPUSeconds(h, pods), time.Now()
		pt, err := measureFull(ctx, h, handler, pods, availBefore)
		if err != nil {
			return d, err
		}
		by := cpu1.Sub(cpu0).Scale(1000 / t1.Sub(t0).Seconds() / float64(len(pods)))
		pt.IdleCPUMillicoresPerPod, pt.IdleCPUByPart = by.Total(), &by
		d.Points = append(d.Points, pt)
		progress(o.Progress, handler, pt)
	}
	if benchhost.IsPodvm(handler) {
		d.Accelerator = h.VMAccelerator()
	}
	return d, nil
}

// podsCPUSeconds is the CPU time every pod's host processes have used, by
// process (result.IdleCPU's parts, in seconds).
func podsCPUSeconds(h *benchhost.Host, pods []*benchhost.Pod) result.IdleCPU {
	var total result.IdleCPU
	sum := func(pids []int) float64 {
		s := 0.0
		for _, pid := range pids {
			if c, err := procmem.CPUSeconds(pid); err == nil {
				s += c
			}
		}
		return s
	}
	for _, p := range pods {
		procs, err := h.Processes(p)
		if err != nil {
			continue
		}
		vmm, vcpu := sum(procs.VMM), 0.0
		for _, pid := range procs.VMM {
			if c, err := procmem.ThreadCPUSeconds(pid, procmem.IsVCPUThread); err == nil {
				vcpu += c
			}
		}
		total.Shim += sum([]int{procs.Shim})
		total.VMMVCPU += vcpu
		total.VMMOther += max(vmm-vcpu, 0)
		total.Virtiofsd += sum(procs.Virtiofsd)
		total.Containers += sum(procs.Containers)
	}
	return total
}

func progress(w io.Writer, handler string, pt result.DensityPoint) {
	m := pt.PerPod
	fmt.Fprintf(w, "    %s, %d pods: per pod PSS shim %.1f, VMM %.1f (guest RAM %.1f, TCG cache %.1f), virtiofsd %.1f, containers %.1f MiB; guest RAM touched %.1f MiB; host overhead %.1f MiB\n",
		handler, pt.Pods, m.ShimPSS, m.VMMPSS, m.VMMGuestRAMPSS, m.VMMTCGCachePSS, m.VirtiofsdPSS, m.ContainersPSS, m.GuestRAMTouched, m.HostOverhead)
	if pt.IdleCPUMillicoresPerPod > 0 {
		fmt.Fprintf(w, "    %s, %d idle pods: %.0f millicores of host CPU per pod\n", handler, pt.Pods, pt.IdleCPUMillicoresPerPod)
		if c := pt.IdleCPUByPart; c != nil {
			fmt.Fprintf(w, "    %s: shim %.1f, VMM vCPU %.1f, VMM rest %.1f, virtiofsd %.1f, containers %.1f\n",
				handler, c.Shim, c.VMMVCPU, c.VMMOther, c.Virtiofsd, c.Containers)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// checkpoints are the pod counts with an intermediate measurement: 1, 2,
// 5, then every 5 up to 20 and every 10 after, and n itself.
func checkpoints(n int) map[int]bool {
	out := map[int]bool{n: true}
	for _, c := range []int{1, 2, 5} {
		out[c] = c <= n
	}
	for c := 10; c <= n; c += 5 {
		if c <= 20 || c%10 == 0 {
			out[c] = true
		}
	}
	return out
}

// measureFull measures once the cache mode's pool is full again (a no-op
// for other handlers): the pool then holds as many VMs as at the climb's
// start, so the host's MemAvailable drop is the pods'. Each pod's own
// figures read its processes only, never the pool's.
func measureFull(ctx context.Context, h *benchhost.Host, handler string, pods []*benchhost.Pod, availBefore float64) (result.DensityPoint, error) {
	if err := h.WaitCacheRefilled(ctx, handler); err != nil {
		return result.DensityPoint{}, fmt.Errorf("density of %s: %w", handler, err)
	}
	return measure(h, pods, availBefore)
}

// measure reads every pod's processes.
func measure(h *benchhost.Host, pods []*benchhost.Pod, availBefore float64) (result.DensityPoint, error) {
	images := []string{h.Config.Hypervisor.Kernel, h.Config.Hypervisor.Initrd}
	var all []result.PodMemory
	for _, p := range pods {
		procs, err := h.Processes(p)
		if err != nil {
			return result.DensityPoint{}, err
		}
		m, err := podMemory(procs, images, h.TemplateDir())
		if err != nil {
			return result.DensityPoint{}, fmt.Errorf("pod %s: %w", p.Name, err)
		}
		if charge, err := h.CgroupChargeMiB(p); err == nil {
			m.CgroupCharge = charge
		}
		all = append(all, m)
	}
	return point(all, benchhost.MemAvailableMiB(), availBefore), nil
}

// podMemory measures one pod's processes.
// VM template clones' RAM files under templateDir count as guest RAM.
func podMemory(p benchhost.PodProcesses, images []string, templateDir string) (result.PodMemory, error) {
	read := func(pids []int) (procmem.Breakdown, error) {
		var sum procmem.Breakdown
		for _, pid := range pids {
			b, err := procmem.Read(pid, images, templateDir)
			if err != nil {
				return sum, err
			}
			sum = sum.Add(b)
		}
		return sum, nil
	}
	shim, err := read([]int{p.Shim})
	if err != nil {
		return result.PodMemory{}, err
	}
	vmm, err := read(p.VMM)
	if err != nil {
		return result.PodMemory{}, err
	}
	vfs, err := read(p.Virtiofsd)
	if err != nil {
		return result.PodMemory{}, err
	}
	ctrs, err := read(p.Containers)
	if err != nil {
		return result.PodMemory{}, err
	}
	var touched uint64
	for _, pid := range p.VMM {
		if kb, ok, err := procmem.MemfdAllocatedKB(pid); err == nil && ok {
			touched += kb
		}
	}
	return podMemoryOf(shim, vmm, vfs, ctrs, touched), nil
}

// podMemoryOf puts one pod's measurements together.
func podMemoryOf(shim, vmm, vfs, ctrs procmem.Breakdown, touchedKB uint64) result.PodMemory {
	mib := result.MiB
	total := shim.PssKB + vmm.PssKB + vfs.PssKB + ctrs.PssKB
	m := result.PodMemory{
		ShimPSS:              mib(shim.PssKB),
		VMMPSS:               mib(vmm.PssKB),
		VMMGuestRAMPSS:       mib(vmm.GuestRAMKB),
		VMMTCGCachePSS:       mib(vmm.JITKB),
		VMMImagesPSS:         mib(vmm.ImagesKB),
		VMMOtherPSS:          mib(vmm.OtherKB()),
		VirtiofsdPSS:         mib(vfs.PssKB),
		VirtiofsdGuestRAMPSS: mib(vfs.GuestRAMKB),
		ContainersPSS:        mib(ctrs.PssKB),
		GuestRAMTouched:      mib(touchedKB),
		Total:                mib(total),
	}
	if vmm.PssKB > 0 {
		// A pod VM: everything but its guest RAM is host overhead.
		m.HostOverhead = mib(total - vmm.GuestRAMKB - vfs.GuestRAMKB)
		m.HostOverheadExclTCG = m.HostOverhead - mib(vmm.JITKB)
	} else {
		// runc, runsc: the pod's own processes are its workload (for
		// runsc, gVisor's kernel too); the shim is the overhead.
		m.HostOverhead = mib(shim.PssKB)
		m.HostOverheadExclTCG = m.HostOverhead
	}
	return m
}

// point averages the pods and summarizes shim PSS and host overhead.
func point(all []result.PodMemory, availNow, availBefore float64) result.DensityPoint {
	pt := result.DensityPoint{Pods: len(all)}
	if len(all) == 0 {
		return pt
	}
	var shim, over []float64
	var s result.PodMemory
	for _, m := range all {
		shim = append(shim, m.ShimPSS)
		over = append(over, m.HostOverhead)
		s.ShimPSS += m.ShimPSS
		s.VMMPSS += m.VMMPSS
		s.VMMGuestRAMPSS += m.VMMGuestRAMPSS
		s.VMMTCGCachePSS += m.VMMTCGCachePSS
		s.VMMImagesPSS += m.VMMImagesPSS
		s.VMMOtherPSS += m.VMMOtherPSS
		s.VirtiofsdPSS += m.VirtiofsdPSS
		s.VirtiofsdGuestRAMPSS += m.VirtiofsdGuestRAMPSS
		s.ContainersPSS += m.ContainersPSS
		s.GuestRAMTouched += m.GuestRAMTouched
		s.Total += m.Total
		s.HostOverhead += m.HostOverhead
		s.HostOverheadExclTCG += m.HostOverheadExclTCG
		s.CgroupCharge += m.CgroupCharge
	}
	n := float64(len(all))
	pt.PerPod = result.PodMemory{
		ShimPSS: s.ShimPSS / n, VMMPSS: s.VMMPSS / n, VMMGuestRAMPSS: s.VMMGuestRAMPSS / n,
		VMMTCGCachePSS: s.VMMTCGCachePSS / n, VMMImagesPSS: s.VMMImagesPSS / n, VMMOtherPSS: s.VMMOtherPSS / n,
		VirtiofsdPSS: s.VirtiofsdPSS / n, VirtiofsdGuestRAMPSS: s.VirtiofsdGuestRAMPSS / n,
		ContainersPSS: s.ContainersPSS / n, GuestRAMTouched: s.GuestRAMTouched / n, Total: s.Total / n,
		HostOverhead: s.HostOverhead / n, HostOverheadExclTCG: s.HostOverheadExclTCG / n, CgroupCharge: s.CgroupCharge / n,
	}
	pt.ShimPSS = stats.Summarize(shim)
	pt.HostOverhead = stats.Summarize(over)
	pt.MemAvailableDropPerPodMiB = (availBefore - availNow) / n
	return pt
}
