package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Result of a row against its target.
const (
	statusPass = "PASS"
	statusMiss = "MISS"
	statusFail = "FAIL" // the measurement itself failed (e.g. digest mismatch)
	statusSkip = "SKIP" // not measured in this run
	statusInfo = ""     // no target
)

// Sections of the report, in table order.
const (
	secThroughput = "throughput"
	secLatency    = "latency"
	secMemory     = "memory"
	secCPU        = "cpu"
	secIdle       = "idle"
	secConnect    = "connect"
	secSize       = "size"
)

var sectionOrder = []string{secThroughput, secLatency, secMemory, secCPU, secIdle, secConnect, secSize}

// sortRows orders rows by section, keeping the order within a section.
func sortRows(rows []row) {
	slices.SortStableFunc(rows, func(a, b row) int {
		return slices.Index(sectionOrder, a.Section) - slices.Index(sectionOrder, b.Section)
	})
}

// Units of row values; they pick the formatting.
const (
	unitMBps    = "MB/s"  // bytes per second, shown as 10^6 bytes/s
	unitMicros  = "µs"    // nanoseconds, shown as microseconds
	unitMillis  = "ms"    // nanoseconds, shown as milliseconds
	unitMiB     = "MiB"   // bytes, shown as MiB
	unitKiB     = "KiB"   // bytes, shown as KiB
	unitSeconds = "s"     // seconds
	unitMB      = "MB"    // bytes, shown as 10^6 bytes
	unitCPUPerG = "s/GiB" // CPU seconds per GiB
	unitCount   = "count" // a plain number
	unitRuns    = "runs"  // a whole number of runs or processes
)

// row is one line of the report. Value and Baseline are in base units
// (bytes/s, ns, bytes, s/GiB); NaN means not measured.
type row struct {
	Section       string    `json:"section"`
	Metric        string    `json:"metric"`
	Unit          string    `json:"unit"`
	Value         float64   `json:"value"`
	Samples       []float64 `json:"samples,omitempty"`
	Baseline      float64   `json:"baseline"`
	BaselineLabel string    `json:"baseline_label,omitempty"`
	Target        string    `json:"target,omitempty"`
	Status        string    `json:"status,omitempty"`
	Note          string    `json:"note,omitempty"`
}

// ratio is Value/Baseline, NaN when either is missing.
func (r row) ratio() float64 {
	if r.Baseline == 0 || math.IsNaN(r.Baseline) || math.IsNaN(r.Value) {
		return math.NaN()
	}
	return r.Value / r.Baseline
}

// MarshalJSON writes NaN as null and adds the ratio.
func (r row) MarshalJSON() ([]byte, error) {
	type plain row
	num := func(f float64) *float64 {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return &f
	}
	return json.Marshal(struct {
		plain
		Value    *float64 `json:"value"`
		Baseline *float64 `json:"baseline"`
		Ratio    *float64 `json:"ratio"`
	}{plain(r), num(r.Value), num(r.Baseline), num(r.ratio())})
}

// formatValue renders v (in base units) for unit.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case unitMBps:
		return fmt.Sprintf("%.1f MB/s", v/1e6)
	case unitMicros:
		return fmt.Sprintf("%.0f µs", v/1e3)
	case unitMillis:
		return fmt.Sprintf("%.1f ms", v/1e6)
	case unitMiB:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case unitKiB:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	case unitSeconds:
		return fmt.Sprintf("%.2f s", v)
	case unitMB:
		return fmt.Sprintf("%.2f MB", v/1e6)
	case unitCPUPerG:
		return fmt.Sprintf("%.2f s/GiB", v)
	case unitCount:
		return fmt.Sprintf("%.1f", v)
	case unitRuns:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

func formatRatio(r float64) string {
	if math.IsNaN(r) {
		return "–"
	}
	if r < 0.1 {
		return fmt.Sprintf("%.3f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// markdownTable renders rows as a GitHub Markdown table.
func markdownTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| Measurement | Value | Baseline (same run) | Ratio | Target | Result |\n")
	b.WriteString("|---|---:|---:|---:|---|:---:|\n")
	esc := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, r := range rows {
		metric := r.Metric
		if r.Note != "" {
			metric += " (" + r.Note + ")"
		}
		base := formatValue(r.Baseline, r.Unit)
		if r.BaselineLabel != "" && !math.IsNaN(r.Baseline) {
			base += " " + r.BaselineLabel
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", esc.Replace(metric), formatValue(r.Value, r.Unit),
			esc.Replace(base), formatRatio(r.ratio()), esc.Replace(r.Target), r.Status)
	}
	return b.String()
}

// judge returns PASS when ok, MISS otherwise, and SKIP when v is NaN.
func judge(v float64, ok bool) string {
	if math.IsNaN(v) {
		return statusSkip
	}
	if ok {
		return statusPass
	}
	return statusMiss
}

// machine describes where the bench ran.
type machine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start and the end:
	// other work on a shared machine makes every figure noisier.
	LoadStart string `json:"loadavg_start,omitempty"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

func (m machine) String() string {
	return fmt.Sprintf("%d × %s, %s, Linux %s, load average %s at start, %s at end",
		m.NProc, m.CPUModel, m.GoVersion, m.Kernel, m.LoadStart, m.LoadEnd)
}

// loadAvg is the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// cpuModel reads the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// report is the JSON document written to --out.
type report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Mode     string    `json:"mode"`
	Reps     int       `json:"repetitions"`
	Machine  machine   `json:"machine"`
	Rows     []row     `json:"rows"`
	Errors   []string  `json:"errors,omitempty"`
	ConnectM string    `json:"connect_method"`
	// LocalProxy is the LOCALPROXY binary compared with ours ("" if none).
	LocalProxy string `json:"localproxy,omitempty"`
}

func (r *report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n### tunnel bench (%s mode, %d repetitions, medians)\n\n", r.Mode, r.Reps)
	fmt.Fprintf(w, "Machine: %s. Connect time: %s.\n\n", r.Machine, r.ConnectM)
	if r.LocalProxy != "" {
		fmt.Fprintf(w, "%s = %s: rows \"..., %s\" and \"..., %s\" are measured with it in place of tunnelctl proxy "+
			"and of tunnel-agent, interleaved with ours; their baseline is our figure of the same run (ratio = %s / ours).\n\n",
			localProxyEnv, r.LocalProxy, lpSource.label(), lpDestination.label(), localProxyEnv)
	}
	sortRows(r.Rows)
	fmt.Fprint(w, markdownTable(r.Rows))
	fmt.Fprint(w, verdicts(r.Rows))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\n- error: %s", e)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w)
	}
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// verdicts renders one line per row with a target: result, measurement,
// value (and ratio), target.
func verdicts(rows []row) string {
	var b strings.Builder
	for _, r := range rows {
		if r.Target == "" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nVerdict per target:\n")
		}
		v := formatValue(r.Value, r.Unit)
		if rt := r.ratio(); !math.IsNaN(rt) {
			v += ", " + formatRatio(rt) + " of " + formatValue(r.Baseline, r.Unit)
		}
		fmt.Fprintf(&b, "%-4s %s: %s (target %s)\n", r.Status, r.Metric, v, r.Target)
	}
	return b.String()
}
