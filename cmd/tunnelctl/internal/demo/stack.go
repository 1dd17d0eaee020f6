package demo

import (
	"context"
	"errors"
	"fmt"
)

// stack runs the demo's components and stops them in reverse order of start
// (proxy, then agent, then emulator), so none of them sees its peer vanish first.
type stack struct {
	base  context.Context // the components' parent: not cancelled by Ctrl-C directly
	fail  context.CancelFunc
	comps []*component
	hooks []func()
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
	return &stack{base: context.WithoutCancel(ctx), fail: fail}
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

// stop stops the components newest first and returns the first failure.
func (s *stack) stop() error {
	var first error
	for i := len(s.comps) - 1; i >= 0; i-- {
		c := s.comps[i]
		c.cancel()
		<-c.done
		if c.err != nil && first == nil {
			first = fmt.Errorf("demo %s: %w", c.name, c.err)
		}
	}
	for _, f := range s.hooks {
		f()
	}
	return first
}
