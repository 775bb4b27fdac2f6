// Package stats summarizes benchmark samples: count, minimum, median, 90th
// percentile, maximum and mean, the figures every podvm benchmark reports.
package stats

import (
	"math"
	"sort"
)

// Summary describes a set of samples, all in one unit (the field that holds
// it names the unit: ..._ms, ..._mib).
type Summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// Summarize describes samples; NaN samples are ignored. No samples give the
// zero Summary (N 0).
func Summarize(samples []float64) Summary {
	var xs []float64
	for _, x := range samples {
		if !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return Summary{}
	}
	sort.Float64s(xs)
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return Summary{
		N:      len(xs),
		Min:    xs[0],
		Median: Quantile(xs, 0.5),
		P90:    Quantile(xs, 0.9),
		Max:    xs[len(xs)-1],
		Mean:   sum / float64(len(xs)),
	}
}

// Quantile is the q-quantile (0 <= q <= 1) of sorted samples, interpolated
// linearly between the two nearest ranks (the method of R's default type 7
// and of numpy): the median of an even count is the mean of the middle two.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case n == 1 || q <= 0:
		return sorted[0]
	case q >= 1:
		return sorted[n-1]
	}
	pos := q * float64(n-1)
	lo := int(math.Floor(pos))
	frac := pos - float64(lo)
	if lo+1 >= n {
		return sorted[n-1]
	}
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// Ratio is a/b, or 0 when b is 0 (no baseline to compare with).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
