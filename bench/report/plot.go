package report

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/podvm/podvm/bench/result"
)

// Plots writes the PNG plots of r into dir and returns their file names.
func Plots(dir string, r *result.Results) ([]string, error) {
	var files []string
	save := func(name string, p *plot.Plot, w, h vg.Length) error {
		if p == nil {
			return nil
		}
		if err := p.Save(w, h, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		files = append(files, name)
		return nil
	}
	if b := r.Boot; b != nil {
		if err := save("boot-phases.png", bootPhasesPlot(b), 9*vg.Inch, 5*vg.Inch); err != nil {
			return files, err
		}
		var names []string
		var samples [][]float64
		for _, t := range b.CtrRunTrue {
			names = append(names, t.Runtime)
			samples = append(samples, t.SamplesMs)
		}
		p := boxes("ctr run --rm IMAGE ID true, whole ("+bootAccelerator(b)+")", "ms", names, samples)
		if err := save("ctr-run-true.png", p, 7*vg.Inch, 3*vg.Inch); err != nil {
			return files, err
		}
	}
	if s := r.Startup; s != nil {
		var names []string
		var samples [][]float64
		for _, x := range s.Serial {
			names = append(names, x.Runtime+", one at a time")
			samples = append(samples, x.SamplesMs)
		}
		for _, x := range s.Parallel {
			names = append(names, fmt.Sprintf("%s, %d at once", x.Runtime, x.Pods))
			samples = append(samples, x.SamplesMs)
		}
		p := boxes("CRI pod + container to first output ("+accelName(r.Host.Accelerator)+")", "ms", names, samples)
		if err := save("startup.png", p, 8*vg.Inch, 4*vg.Inch); err != nil {
			return files, err
		}
	}
	if d := r.Density; d != nil {
		if err := save("density.png", densityPlot(r), 8*vg.Inch, 5*vg.Inch); err != nil {
			return files, err
		}
		if err := save("density-start.png", densityStartPlot(d), 8*vg.Inch, 4*vg.Inch); err != nil {
			return files, err
		}
	}
	return files, nil
}

// accelName is an accelerator as the plots and summary write it.
func accelName(accel string) string {
	if accel == "" {
		return "accelerator unknown"
	}
	return strings.ToUpper(accel)
}

// boxes is a horizontal box plot per series, the first at the top; empty
// series are left out. nil when every series is empty.
func boxes(title, unit string, names []string, samples [][]float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = unit
	p.X.Min = 0
	var labels []string
	hi := 0.0
	for i := len(names) - 1; i >= 0; i-- {
		if len(samples[i]) == 0 {
			continue
		}
		for _, v := range samples[i] {
			hi = max(hi, v)
		}
		b, err := plotter.NewBoxPlot(vg.Points(14), float64(len(labels)), plotter.Values(samples[i]))
		if err != nil {
			continue
		}
		b.Horizontal = true
		b.FillColor = color.RGBA{R: 127, G: 188, B: 165, A: 255}
		p.Add(b)
		labels = append(labels, names[i])
	}
	if len(labels) == 0 {
		return nil
	}
	// Leading spaces: gonum sizes the axis a little short of long labels.
	for i := range labels {
		labels[i] = "   " + labels[i]
	}
	p.NominalY(labels...)
	// Room around the boxes: the axes would otherwise end at the first and
	// last box's centre and the largest sample.
	p.Y.Min, p.Y.Max = -0.7, float64(len(labels))-0.3
	p.X.Max = hi * 1.05
	p.Add(plotter.NewGrid())
	return p
}

// bootPhasesPlot is each boot phase's distribution over the runs.
func bootPhasesPlot(b *result.Boot) *plot.Plot {
	var names []string
	var samples [][]float64
	for _, ph := range b.Phases {
		var xs []float64
		for _, s := range b.Samples {
			xs = append(xs, s.Marks[ph.To]-s.Marks[ph.From])
		}
		names = append(names, fmt.Sprintf("%s (%s)", ph.Name, ph.Clock))
		samples = append(samples, xs)
	}
	return boxes(fmt.Sprintf("pod VM start phases, %d runs (%s)", len(b.Samples), bootAccelerator(b)), "ms", names, samples)
}

// linesPlot is an empty line plot with its axes from 0 and the legend at
// the top left.
func linesPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

// densityPlot is each part of a pod's memory against the number of pods.
func densityPlot(r *result.Results) *plot.Plot {
	p := linesPlot("host memory per idle pod ("+accelName(r.Host.Accelerator)+")", "pods running", "MiB per pod (PSS; mean)")
	var lines []any
	hi := 0.0
	series := func(hd result.HandlerDensity, name string, f func(result.PodMemory) float64) {
		var xys plotter.XYs
		for _, pt := range hd.Points {
			xys = append(xys, plotter.XY{X: float64(pt.Pods), Y: f(pt.PerPod)})
			hi = max(hi, f(pt.PerPod))
		}
		lines = append(lines, name, xys)
	}
	for _, hd := range r.Density.Handlers {
		if len(hd.Points) == 0 {
			continue
		}
		if hd.Handler == "podvm" {
			series(hd, "podvm: guest RAM touched", func(m result.PodMemory) float64 { return m.GuestRAMTouched })
			series(hd, "podvm: host overhead (all but guest RAM)", func(m result.PodMemory) float64 { return m.HostOverhead })
			series(hd, "podvm: TCG translation cache", func(m result.PodMemory) float64 { return m.VMMTCGCachePSS })
			series(hd, "podvm: QEMU, rest", func(m result.PodMemory) float64 { return m.VMMOtherPSS + m.VMMImagesPSS })
			series(hd, "podvm: virtiofsd outside guest RAM", func(m result.PodMemory) float64 { return m.VirtiofsdPSS - m.VirtiofsdGuestRAMPSS })
			series(hd, "podvm: shim", func(m result.PodMemory) float64 { return m.ShimPSS })
			continue
		}
		if isFactoryMode(r, hd.Handler) {
			// A clone's guest RAM is a template file mapped private: its
			// PSS, not a memfd's allocation, is what it costs.
			series(hd, hd.Handler+": guest RAM PSS", func(m result.PodMemory) float64 { return m.VMMGuestRAMPSS })
			series(hd, hd.Handler+": host overhead (all but guest RAM)", func(m result.PodMemory) float64 { return m.HostOverhead })
			continue
		}
		series(hd, hd.Runtime+": shim + containers", func(m result.PodMemory) float64 { return m.Total })
	}
	if len(lines) == 0 {
		return nil
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return nil
	}
	// Headroom above the lines for the legend.
	p.Y.Max = hi * 1.8
	p.Add(plotter.NewGrid())
	return p
}

// densityStartPlot is each pod's start time against how many ran before.
func densityStartPlot(d *result.Density) *plot.Plot {
	p := linesPlot("idle pod start (RunPodSandbox to StartContainer) as the host fills", "pod number", "ms")
	var lines []any
	hi := 0.0
	for _, hd := range d.Handlers {
		if len(hd.StartSamples) == 0 {
			continue
		}
		var xys plotter.XYs
		for i, v := range hd.StartSamples {
			xys = append(xys, plotter.XY{X: float64(i + 1), Y: v})
			hi = max(hi, v)
		}
		lines = append(lines, hd.Runtime, xys)
	}
	if len(lines) == 0 || plotutil.AddLinePoints(p, lines...) != nil {
		return nil
	}
	p.Y.Max = hi * 1.3
	p.Add(plotter.NewGrid())
	return p
}
