package demo

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stack runs the demo's components and stops them in reverse order of start
// (proxy, then agent, then emulator), so none of them sees its peer vanish first.
type stack struct {
	base    context.Context // the components' parent: not cancelled by Ctrl-C directly
	timeout time.Duration   // per-component stop bound
	fail    context.CancelFunc
	comps   []*component
	hooks   []func()
}

type component struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// newStack returns a stack whose components outlive ctx's cancellation until stop;
// fail is called when a component ends on its own.
func newStack(ctx context.Context, fail context.CancelFunc) *stack {
	return &stack{base: context.WithoutCancel(ctx), fail: fail, timeout: stopTimeout}
}

// start runs fn in its own goroutine until stop.
func (s *stack) start(name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(s.base)
	c := &component{name: name, cancel: cancel, done: make(chan struct{})}
	s.comps = append(s.comps, c)
	go func() {
		defer close(c.done)
		c.err = fn(ctx)
		if ctx.Err() == nil { // ended by itself: the demo cannot go on
			if c.err == nil {
				c.err = errors.New("stopped unexpectedly")
			}
			s.fail()
		}
	}()
}

// onStop registers f to run after every component stopped.
func (s *stack) onStop(f func()) { s.hooks = append(s.hooks, f) }

// stopTimeout bounds how long stop waits for one component, so that Ctrl-C
// always ends the demo.
const stopTimeout = 10 * time.Second

// stop stops the components newest first and returns the first failure.
func (s *stack) stop() error {
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	for i := len(s.comps) - 1; i >= 0; i-- {
		c := s.comps[i]
		c.cancel()
		select {
		case <-c.done:
		case <-time.After(s.timeout):
			note(fmt.Errorf("demo %s did not stop within %s: %w", c.name, s.timeout, errStuck))
			continue
		}
		if c.err != nil {
			note(fmt.Errorf("demo %s: %w", c.name, c.err))
		}
	}
	for _, f := range s.hooks {
		f()
	}
	return first
}

// errStuck marks a component that ignored its cancellation.
var errStuck = errors.New("it ignored the stop request")
