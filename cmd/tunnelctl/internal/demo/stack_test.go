package demo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStackStopsNewestFirstAndBounded(t *testing.T) {
	var order []string
	s := newStack(context.Background(), func() { t.Error("fail called although every component was stopped") })
	s.timeout = 200 * time.Millisecond
	release := make(chan struct{})
	s.start("stuck", func(ctx context.Context) error { <-release; return nil })
	s.start("first", func(ctx context.Context) error { <-ctx.Done(); order = append(order, "first"); return nil })
	s.start("second", func(ctx context.Context) error { <-ctx.Done(); order = append(order, "second"); return nil })
	s.onStop(func() { order = append(order, "hook") })
	err := s.stop()
	close(release)
	if !errors.Is(err, errStuck) || !strings.Contains(err.Error(), "demo stuck") {
		t.Errorf("stop() = %v", err)
	}
	if strings.Join(order, ",") != "second,first,hook" {
		t.Errorf("stop order %v", order)
	}
	<-s.comps[0].done
}

func TestStackReportsFailure(t *testing.T) {
	failed := make(chan struct{})
	s := newStack(context.Background(), func() { close(failed) })
	s.start("broken", func(ctx context.Context) error { return errors.New("bind: address in use") })
	<-failed
	if err := s.stop(); err == nil || !strings.Contains(err.Error(), "demo broken: bind") {
		t.Errorf("stop() = %v", err)
	}
}
