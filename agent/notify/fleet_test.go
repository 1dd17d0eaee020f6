package notify

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
)

// TestMQTTFleetBrokerRestart runs a fleet of sources (goroutines, one paho
// client each) against one broker, restarts the broker, and prints the
// reconnect attempts per time slot: with full jitter they spread over the
// backoff window instead of arriving in lockstep.
//
// Time is scaled down: backoff 50 ms..800 ms, broker down 1 s; slots of
// 50 ms stand for the seconds of the real drill. Normal CI runs 50 agents
// (a few seconds); TUNNEL_AGENT_FLEET=200 runs 200 (about 20 s under
// -race on a busy 2-core machine); TUNNEL_AGENT_FLEET=full runs 200 with
// the real settings (1 s..2 min, broker down 30 s, slots of 1 s; minutes).
func TestMQTTFleetBrokerRestart(t *testing.T) {
	agents, minD, maxD, down, slot := 50, 50*time.Millisecond, 800*time.Millisecond, time.Second, 50*time.Millisecond
	switch os.Getenv("TUNNEL_AGENT_FLEET") {
	case "200":
		agents = 200
	case "full":
		agents, minD, maxD, down, slot = 200, time.Second, 2*time.Minute, 30*time.Second, time.Second
	}
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	addr := b.Addr
	var mu sync.Mutex
	// attempts are when each agent began to connect; planned, when each
	// retry was due (the failure's time plus the delay its backoff chose).
	// The spread is judged on planned times: they are the backoff's choice,
	// while the attempts' own times also carry the scheduler's delays, which
	// bunch timers together on a loaded machine.
	var attempts, planned []time.Time
	ready := make(chan struct{}, agents*4)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range agents {
		cfg := testConfig(t, p, b.Port(), nil)
		cfg.ClientID = fmt.Sprintf("fleet-%03d", i)
		cfg.MinReconnectInterval, cfg.MaxReconnectInterval, cfg.StableAfter = minD, maxD, down
		cfg.ConnectTimeout = 10 * time.Second
		cfg.OnState = func(s StateInfo) {
			mu.Lock()
			defer mu.Unlock()
			switch s.State {
			case StateConnecting:
				attempts = append(attempts, time.Now())
			case StateRetrying:
				planned = append(planned, time.Now().Add(s.RetryIn))
			}
		}
		src, err := NewMQTTSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_ = src.Run(ctx, func([]byte) bool { return true }, func() { ready <- struct{}{} })
		})
	}
	waitN(t, ready, agents, "fleet connected")
	mu.Lock()
	attempts, planned = attempts[:0], planned[:0]
	mu.Unlock()
	outage := time.Now()
	b.Close()
	time.Sleep(down)
	notifytest.StartBroker(t, p, notifytest.BrokerOptions{Addr: addr})
	restarted := time.Now()
	waitN(t, ready, agents, "fleet reconnected")
	all := time.Since(outage)

	mu.Lock()
	defer mu.Unlock()
	perSlot := func(times []time.Time) []int {
		var buckets []int
		for _, a := range times {
			i := int(a.Sub(outage) / slot)
			for len(buckets) <= i {
				buckets = append(buckets, 0)
			}
			buckets[i]++
		}
		return buckets
	}
	var line strings.Builder
	peak := 0
	for _, n := range perSlot(attempts) {
		fmt.Fprintf(&line, "%d ", n)
		peak = max(peak, n)
	}
	afterRestart := 0
	for i, n := range perSlot(planned) {
		if time.Duration(i)*slot >= restarted.Sub(outage) {
			afterRestart = max(afterRestart, n)
		}
	}
	t.Logf("%d agents, backoff %s..%s full jitter, broker down %s: %d attempts, all back %s after the outage",
		agents, minD, maxD, down, len(attempts), all.Round(slot))
	t.Logf("attempts per %s from the outage: %s", slot, line.String())
	t.Logf("peak %d attempts per slot; after the broker came back at most %d retries due per slot (%d%% of the fleet; a fixed retry interval "+
		"brings 100%% of it back in one slot)", peak, afterRestart, afterRestart*100/agents)
	// The first slots hold everyone's first retries (the loss itself is
	// simultaneous); what matters is that the returning broker is not hit
	// by the whole fleet at once.
	if afterRestart > agents/3 {
		t.Errorf("%d of %d agents were due to retry in the same %s after the restart: not spread", afterRestart, agents, slot)
	}
}

func waitN(t *testing.T, ch <-chan struct{}, n int, what string) {
	t.Helper()
	deadline := time.After(5 * time.Minute)
	for range n {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
