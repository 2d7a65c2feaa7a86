package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// target is what a figure should reach; it is reported, not asserted.
type target struct {
	Op    string  `json:"op"`    // ">=" or "<="
	Value float64 `json:"value"` // in the unit of what it applies to
	On    string  `json:"on"`    // "ratio" or "product"
}

func (t *target) String() string {
	if t == nil {
		return "—"
	}
	op := map[string]string{">=": "≥", "<=": "≤"}[t.Op]
	return op + " " + fmtNum(t.Value)
}

// row is one line of the results table.
type row struct {
	Scenario     string     `json:"scenario"`
	Name         string     `json:"name"`
	Product      *sample    `json:"product"`
	BaselineName string     `json:"baseline_name,omitempty"`
	Baseline     *sample    `json:"baseline,omitempty"`
	Ratio        *ratioStat `json:"ratio,omitempty"`
	Target       *target    `json:"target,omitempty"`
	Met          *bool      `json:"met,omitempty"`
	Short        string     `json:"short,omitempty"` // label in the chart
}

func (r *row) judge() {
	if r.Target == nil {
		return
	}
	v := math.NaN()
	switch r.Target.On {
	case "ratio":
		if r.Ratio != nil {
			v = r.Ratio.Value
		}
	default:
		if r.Product.ok() {
			v = r.Product.median()
		}
	}
	if math.IsNaN(v) {
		return
	}
	met := v >= r.Target.Value
	if r.Target.Op == "<=" {
		met = v <= r.Target.Value
	}
	r.Met = &met
}

// score is the figure the target applies to, divided by the target, made
// so that ≥ 1 means met whatever the direction (for the chart).
func (r *row) score() (float64, bool) {
	if r.Target == nil || r.Met == nil {
		return 0, false
	}
	v := r.Product.median()
	if r.Target.On == "ratio" {
		v = r.Ratio.Value
	}
	if r.Target.Value == 0 {
		return 0, false
	}
	if r.Target.Op == "<=" {
		if v == 0 {
			return math.Inf(1), true
		}
		return r.Target.Value / v, true
	}
	return v / r.Target.Value, true
}

type machine struct {
	Nproc     string `json:"nproc"`
	NumCPU    int    `json:"num_cpu"`
	CPU       string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Caddy     string `json:"caddy_version"`
	Kernel    string `json:"kernel"`
	Date      string `json:"date"`
}

type timing struct {
	Scenario string `json:"scenario"`
	Took     string `json:"took"`
}

// results is everything written to results.json.
type results struct {
	Command  string         `json:"command"`
	Argv     []string       `json:"argv"`
	Machine  machine        `json:"machine"`
	Config   config         `json:"config"`
	Duration string         `json:"duration"`
	Timings  []timing       `json:"timings"`
	Rows     []*row         `json:"rows"`
	Notes    []string       `json:"notes"`
	Errors   []string       `json:"errors,omitempty"`
	Raw      map[string]any `json:"raw"`
}

func newResults(b *bench) *results {
	cmd := "make bench"
	if b.cfg.Quick {
		cmd = "BENCH_QUICK=1 make bench"
	}
	return &results{Command: cmd, Argv: os.Args, Machine: machineInfo(b.caddyBin), Config: b.cfg, Raw: map[string]any{}}
}

func (b *bench) add(r *row) {
	if r.Baseline != nil && r.Ratio == nil {
		r.Ratio = ratioOf(r.Product, r.Baseline)
	}
	r.judge()
	b.res.Rows = append(b.res.Rows, r)
	met := ""
	if r.Met != nil {
		met = fmt.Sprintf(" met=%v", *r.Met)
	}
	logf("  %s: %s | %s %s | ratio %s%s", r.Name, r.Product, r.BaselineName, r.Baseline, r.Ratio, met)
}

func (b *bench) note(format string, args ...any) {
	b.res.Notes = append(b.res.Notes, fmt.Sprintf(format, args...))
}

func (b *bench) raw(key string, v any) { b.res.Raw[key] = v }

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// markdown renders the table, the misses, the notes and the machine.
func (r *results) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# caddy-drm benchmark\n\n`%s` — %s, took %s", r.Command, r.Machine.Date, r.Duration)
	if r.Config.Quick {
		sb.WriteString(" — **quick mode: small and short, for smoke tests only; do not quote these figures**")
	}
	sb.WriteString("\n\nEvery figure is the median of the runs, with min–max and the number of runs. " +
		"Ratios are product ÷ baseline of the medians, with the min–max of the ratios of runs made in the same round. " +
		"Targets are reported, not asserted.\n\n")
	sb.WriteString("| # | scenario | product | baseline | ratio | target | met? |\n|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		base := "—"
		if row.Baseline != nil {
			base = row.BaselineName + ": " + row.Baseline.String()
		}
		tgt := row.Target.String()
		if row.Target != nil && row.Target.On == "product" {
			tgt += " " + row.Product.Unit
		}
		met := "—"
		if row.Met != nil {
			met = "yes"
			if !*row.Met {
				met = "**no**"
			}
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, cell(row.Name),
			cell(row.Product.String()), cell(base), row.Ratio, tgt, met)
	}
	var missed []string
	for _, row := range r.Rows {
		if row.Met != nil && !*row.Met {
			missed = append(missed, row.Scenario+" "+row.Name)
		}
	}
	if len(missed) > 0 {
		sb.WriteString("\n**Targets missed:** " + strings.Join(missed, "; ") + "\n")
	}
	if len(r.Errors) > 0 {
		sb.WriteString("\n## Errors\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&sb, "- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
	if len(r.Notes) > 0 {
		sb.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&sb, "- %s\n", n)
		}
	}
	m := r.Machine
	fmt.Fprintf(&sb, "\n## Machine\n\n- nproc: %s\n- CPU: %s\n- Go: %s\n- Caddy: %s\n- kernel: %s\n- date: %s\n- command: `%s`\n",
		m.Nproc, m.CPU, m.GoVersion, m.Caddy, m.Kernel, m.Date, r.Command)
	sb.WriteString("- time per scenario: ")
	for i, t := range r.Timings {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s %s", t.Scenario, t.Took)
	}
	sb.WriteString("\n\nChart: [chart.png](chart.png). Raw numbers: [results.json](results.json).\n")
	return sb.String()
}

// write saves results.md, results.json and chart.png and returns the
// markdown.
func (r *results) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	order := map[string]int{"stage": 99}
	slices.SortStableFunc(r.Rows, func(a, b *row) int {
		oa, ok := order[a.Scenario]
		if !ok {
			oa, _ = strconv.Atoi(a.Scenario)
		}
		ob, ok := order[b.Scenario]
		if !ok {
			ob, _ = strconv.Atoi(b.Scenario)
		}
		return oa - ob
	})
	md := r.markdown()
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return "", err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return "", err
	}
	if err := drawChart(r, filepath.Join(dir, "chart.png")); err != nil {
		return "", err
	}
	return md, nil
}
