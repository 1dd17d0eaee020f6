package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets to exit after SIGTERM before SIGKILL.
const stopGrace = 6 * time.Second

// ErrChildExited means a program the bench started ended before the line
// the bench was waiting for.
var ErrChildExited = errors.New("process exited")

// child is a program the bench runs. Its output lines are kept (and copied
// to a log file) so the bench can wait for readiness and event lines.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
	readers sync.WaitGroup
}

// startChild starts bin with args in its own process group (so the
// terminal's Ctrl-C reaches only the bench, which then stops it in order)
// with SIGKILL as parent-death signal. Output goes to logPath too.
func startChild(name, bin string, args, env []string, logPath string) (*child, error) {
	c := &child{name: name, done: make(chan struct{}), changed: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	var logMu sync.Mutex
	for _, r := range []io.Reader{stdout, stderr} {
		c.readers.Go(func() { c.scan(r, logf, &logMu) })
	}
	go func() {
		c.readers.Wait() // pipes must be drained before Wait
		c.err = c.cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) scan(r io.Reader, logf io.Writer, logMu *sync.Mutex) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		logMu.Lock()
		fmt.Fprintln(logf, line)
		logMu.Unlock()
		c.mu.Lock()
		c.lines = append(c.lines, line)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// mark returns the number of lines seen so far, for waitLine's from.
func (c *child) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// waitLine waits until a line at index >= from satisfies match, and returns
// it with its index. It fails when ctx ends or the process exits.
func (c *child) waitLine(ctx context.Context, from int, match func(string) bool) (string, int, error) {
	for {
		c.mu.Lock()
		for i := from; i < len(c.lines); i++ {
			if match(c.lines[i]) {
				l := c.lines[i]
				c.mu.Unlock()
				return l, i, nil
			}
		}
		from = len(c.lines)
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-c.done:
			if c.mark() == from {
				return "", 0, fmt.Errorf("%s: %w (%v); last output:\n%s", c.name, ErrChildExited, c.err, c.tail(15))
			}
		case <-ctx.Done():
			return "", 0, fmt.Errorf("%s: %w; last output:\n%s", c.name, context.Cause(ctx), c.tail(15))
		}
	}
}

// tail returns the last n output lines.
func (c *child) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lines[max(0, len(c.lines)-n):]
	return "  " + strings.Join(l, "\n  ")
}

// stop sends SIGTERM, waits stopGrace, then kills the process group.
func (c *child) stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", c.name, stopGrace)
}
