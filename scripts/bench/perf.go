package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perfRecorder runs `perf record` on the tunnel processes (--perf).
type perfRecorder struct {
	cmd  *exec.Cmd
	data string
	done chan error
}

// startPerf attaches perf to the stack's processes; nil when --perf is off.
func (b *bench) startPerf(st *stack) *perfRecorder {
	if !b.opts.perf || st == nil {
		return nil
	}
	pids := []string{strconv.Itoa(st.agent.pid()), strconv.Itoa(st.emu.pid()), strconv.Itoa(st.proxy.pid())}
	p := &perfRecorder{data: filepath.Join(b.tmp, "perf.data"), done: make(chan error, 1)}
	p.cmd = exec.Command("perf", "record", "-F", "499", "-g", "-o", p.data, "-p", strings.Join(pids, ","))
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		b.fail(fmt.Errorf("perf record: %w (is perf installed and allowed? see /proc/sys/kernel/perf_event_paranoid)", err))
		return nil
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p
}

// stop ends the recording and prints the top functions per process.
func (p *perfRecorder) stop(ctx context.Context, b *bench) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	rep := exec.CommandContext(ctx, "perf", "report", "-i", p.data, "--stdio", "--no-children", "-g", "none",
		"--sort", "comm,sym", "--percent-limit", "1")
	var out bytes.Buffer
	rep.Stdout, rep.Stderr = &out, &out
	if err := rep.Run(); err != nil {
		b.fail(fmt.Errorf("perf report: %w", err))
	}
	var lines []string
	for l := range strings.SplitSeq(out.String(), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			lines = append(lines, l)
		}
	}
	b.perfTop = strings.Join(lines, "\n")
}
