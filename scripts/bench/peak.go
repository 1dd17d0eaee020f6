package main

import (
	"fmt"
	"os"
	"strconv"
)

// Peak resident memory per process and kind of bulk run. Before each
// tunnel bulk run the bench resets the peak of every process on the path
// (writing 5 to /proc/<pid>/clear_refs sets VmHWM to the current VmRSS),
// and reads VmHWM after it, so each figure is the peak of that kind of run
// alone, the largest over the repetitions.

// peakTargets are the issue 19 targets per process (bytes); 0: none.
var peakTargets = map[string]float64{"tunnel-agent": 13 << 20, "tunnelctl proxy": 16 << 20}

// peakProcs names the processes measured, in row order.
var peakProcs = []string{"tunnel-agent", "tunnelctl proxy", "tunnel-emulator"}

// splitProcs are the processes whose highest peak is broken down into
// file-backed pages and anonymous memory (the one with a missed target).
var splitProcs = []string{"tunnel-agent"}

// peaks holds the largest VmHWM seen per bulk kind and process.
type peaks struct {
	ok     bool // clear_refs works here
	max    map[bulkKey]map[string]float64
	before map[string]procMem // at the last reset
	top    map[string]peakRun // the run with the highest VmHWM, per process
}

// peakRun is one bulk run with the memory of a process before and after
// it: where its peak went. At the end of a run RSS is usually at the peak
// (memory grows during the run and the collector returns it later).
type peakRun struct {
	key           bulkKey
	before, after procMem
}

// resetPeak makes VmHWM of pid start again from its current RSS.
func resetPeak(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// reset resets the peaks of the processes; it reports whether it could.
func (p *peaks) reset(procs map[string]*child) {
	p.ok = true
	if p.before == nil {
		p.before = map[string]procMem{}
	}
	for name, c := range procs {
		if resetPeak(c.pid()) != nil {
			p.ok = false
		}
		p.before[name], _ = readMem(c.pid())
	}
}

// record keeps the processes' VmHWM for key.
func (p *peaks) record(key bulkKey, procs map[string]*child) {
	if !p.ok {
		return
	}
	if p.max == nil {
		p.max = map[bulkKey]map[string]float64{}
	}
	m := p.max[key]
	if m == nil {
		m = map[string]float64{}
		p.max[key] = m
	}
	if p.top == nil {
		p.top = map[string]peakRun{}
	}
	for name, c := range procs {
		if mem, err := readMem(c.pid()); err == nil {
			m[name] = max(m[name], float64(mem.HWM))
			if mem.HWM > p.top[name].after.HWM {
				p.top[name] = peakRun{key: key, before: p.before[name], after: mem}
			}
		}
	}
}

// addPeakRows adds one row per process and kind of bulk run; the baseline
// is the process's RSS with the tunnel open and no connection.
func (b *bench) addPeakRows(p *peaks, st *stack) {
	if st == nil {
		return
	}
	if !p.ok {
		b.fail(fmt.Errorf("peak RSS rows not measured: /proc/<pid>/clear_refs is not writable here"))
		return
	}
	base := map[string]float64{"tunnel-agent": st.agentOne, "tunnelctl proxy": st.proxyOne, "tunnel-emulator": st.emuOne}
	for _, d := range directions {
		for _, streams := range []int{1, 8} {
			m := p.max[bulkKey{d.name, streams, true, ""}]
			for _, name := range peakProcs {
				v, ok := m[name]
				if !ok {
					continue
				}
				r := row{Section: secMemory, Metric: fmt.Sprintf("%s peak RSS (VmHWM), bulk %s, %d stream(s)", name, d.name, streams),
					Unit: unitMiB, Value: v, Baseline: base[name], BaselineLabel: "1 tunnel, no connection"}
				if t := peakTargets[name]; t > 0 {
					r.Target, r.Status = fmt.Sprintf("<= %.0f MiB", t/(1<<20)), judge(v, v <= t)
				}
				b.add(r)
			}
		}
	}
	for _, name := range splitProcs {
		t, ok := p.top[name]
		if !ok || t.after.File == 0 {
			continue // RssFile unknown on this kernel
		}
		run := fmt.Sprintf("%s at the end of its highest-peak bulk run (%s, %d stream(s))", name, t.key.dir, t.key.streams)
		b.add(row{Section: secMemory, Metric: run + ": file-backed pages (its binary's code and read-only data)",
			Unit: unitMiB, Value: float64(t.after.File), Baseline: float64(t.after.RSS), BaselineLabel: "RSS then"})
		b.add(row{Section: secMemory, Metric: run + ": anonymous memory (heap, stacks, runtime)",
			Unit: unitMiB, Value: float64(t.after.Anon), Baseline: float64(t.before.Anon), BaselineLabel: "anonymous before that run"})
	}
}
