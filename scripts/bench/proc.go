package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procMem is a process's resident memory from /proc/<pid>/status, in bytes.
type procMem struct {
	RSS, HWM int64 // VmRSS, VmHWM (peak)
	// Anon and File split RSS (RssAnon, RssFile, Linux 4.5+; 0 when
	// absent): anonymous memory (heap, stacks, runtime) and file-backed
	// pages, which for a static Go binary are its own code and read-only
	// data.
	Anon, File int64
}

func readMem(pid int) (procMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (procMem, error) {
	var m procMem
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		required := true
		switch key {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		case "RssAnon":
			dst, required = &m.Anon, false
		case "RssFile":
			dst, required = &m.File, false
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("unexpected %s line %q in /proc status", key, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("parse %s: %w", key, err)
		}
		*dst = kb << 10
		if required {
			found++
		}
	}
	if found != 2 {
		return m, fmt.Errorf("VmRSS/VmHWM missing from /proc status (process gone?)")
	}
	return m, nil
}

// readCPU returns the user+system CPU time pid has used.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	return parseStat(b)
}

// parseStat extracts utime+stime (fields 14 and 15) from /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may contain spaces, so
// fields are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14 -> f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ctxSwitches sums the context switches, voluntary and not, of every
// thread of the processes so far (from /proc/<pid>/task/*/status; threads
// that ended are not counted, and Go keeps its threads).
func ctxSwitches(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			total += parseSwitches(string(b))
		}
	}
	return total
}

// parseSwitches adds the voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches lines of a status file.
func parseSwitches(status string) int64 {
	var n int64
	for line := range strings.Lines(status) {
		name, val, ok := strings.Cut(line, ":")
		if ok && (name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches") {
			v, _ := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			n += v
		}
	}
	return n
}

// pidsOf returns the process ids of children.
func pidsOf(cs ...*child) []int {
	pids := make([]int, 0, len(cs))
	for _, c := range cs {
		if c != nil {
			pids = append(pids, c.pid())
		}
	}
	return pids
}
