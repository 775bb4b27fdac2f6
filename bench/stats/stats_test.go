package stats

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []float64
		want    Summary
	}{
		{"empty", nil, Summary{}},
		{"only NaN", []float64{math.NaN()}, Summary{}},
		{"one", []float64{7}, Summary{N: 1, Min: 7, Median: 7, P90: 7, Max: 7, Mean: 7}},
		{"two", []float64{3, 1}, Summary{N: 2, Min: 1, Median: 2, P90: 2.8, Max: 3, Mean: 2}},
		{"odd, unsorted", []float64{5, 1, 3}, Summary{N: 3, Min: 1, Median: 3, P90: 4.6, Max: 5, Mean: 3}},
		{"ten", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, Summary{N: 10, Min: 1, Median: 5.5, P90: 9.1, Max: 10, Mean: 5.5}},
		{"NaN ignored", []float64{2, math.NaN(), 4}, Summary{N: 2, Min: 2, Median: 3, P90: 3.8, Max: 4, Mean: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.samples)
			if got.N != tc.want.N || !near(got.Min, tc.want.Min) || !near(got.Median, tc.want.Median) ||
				!near(got.P90, tc.want.P90) || !near(got.Max, tc.want.Max) || !near(got.Mean, tc.want.Mean) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.samples, got, tc.want)
			}
		})
	}
}

func TestSummarizeKeepsInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("input reordered: %v", in)
	}
}

func TestQuantile(t *testing.T) {
	sorted := []float64{1, 2, 3, 4}
	for _, tc := range []struct {
		q, want float64
	}{{-1, 1}, {0, 1}, {0.25, 1.75}, {0.5, 2.5}, {0.9, 3.7}, {1, 4}, {2, 4}} {
		if got := Quantile(sorted, tc.q); !near(got, tc.want) {
			t.Errorf("Quantile(%v, %v) = %v, want %v", sorted, tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of nothing is not NaN")
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct{ a, b, want float64 }{{2, 1, 2}, {1, 4, 0.25}, {1, 0, 0}} {
		if got := Ratio(tc.a, tc.b); !near(got, tc.want) {
			t.Errorf("Ratio(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
