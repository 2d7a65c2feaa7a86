package main

import (
	"fmt"
	"math"
	"slices"
)

// sample is the values of one figure over its runs.
type sample struct {
	Values []float64 `json:"values"`
	Unit   string    `json:"unit"`
}

func newSample(unit string) *sample { return &sample{Unit: unit} }

func (s *sample) add(v float64) { s.Values = append(s.Values, v) }

func (s *sample) ok() bool { return s != nil && len(s.Values) > 0 }

func (s *sample) median() float64 {
	if !s.ok() {
		return math.NaN()
	}
	v := slices.Clone(s.Values)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func (s *sample) min() float64 {
	if !s.ok() {
		return math.NaN()
	}
	return slices.Min(s.Values)
}

func (s *sample) max() float64 {
	if !s.ok() {
		return math.NaN()
	}
	return slices.Max(s.Values)
}

// ratioStat is product/baseline: the ratio of the medians, and the range
// of the ratios of runs made in the same round (the variants of a round
// run back to back, so they share the machine's state at that moment).
type ratioStat struct {
	Value float64 `json:"value"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

func ratioOf(prod, base *sample) *ratioStat {
	if !prod.ok() || !base.ok() || base.median() == 0 {
		return nil
	}
	r := &ratioStat{Value: prod.median() / base.median(), Min: math.Inf(1), Max: math.Inf(-1)}
	n := min(len(prod.Values), len(base.Values))
	for i := range n {
		if base.Values[i] == 0 {
			continue
		}
		q := prod.Values[i] / base.Values[i]
		r.Min, r.Max = math.Min(r.Min, q), math.Max(r.Max, q)
	}
	if math.IsInf(r.Min, 0) {
		r.Min, r.Max = r.Value, r.Value
	}
	return r
}

// scaled returns a sample with every value multiplied by f.
func (s *sample) scaled(f float64, unit string) *sample {
	out := &sample{Unit: unit}
	for _, v := range s.Values {
		out.add(v * f)
	}
	return out
}

// fmtNum prints a number with 3 significant digits, thousands as k.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "n/a"
	case a == 0:
		return "0"
	case a >= 100000:
		return fmt.Sprintf("%.0fk", v/1000)
	case a >= 10000:
		return fmt.Sprintf("%.1fk", v/1000)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// String is "median unit (min–max, n runs)".
func (s *sample) String() string {
	if !s.ok() {
		return "—"
	}
	if len(s.Values) == 1 {
		return fmt.Sprintf("%s %s (1 run)", fmtNum(s.median()), s.Unit)
	}
	return fmt.Sprintf("%s %s (%s–%s, n=%d)", fmtNum(s.median()), s.Unit, fmtNum(s.min()), fmtNum(s.max()), len(s.Values))
}

func (r *ratioStat) String() string {
	if r == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", r.Value, r.Min, r.Max)
}
