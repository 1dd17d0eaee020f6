package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flakyPub is a broker stand-in for the queue's unit tests: it is either
// up (acknowledges) or down (refuses), and records what it acknowledged.
type flakyPub struct {
	mu   sync.Mutex
	down bool
	got  []Event
}

func (p *flakyPub) Publish(_ context.Context, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if topic != "t/events" {
		return fmt.Errorf("wrong topic %q", topic)
	}
	if p.down {
		return errors.New("not connected")
	}
	var e Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return err
	}
	p.got = append(p.got, e)
	return nil
}

func (p *flakyPub) set(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func (p *flakyPub) seqs() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s []uint64
	for _, e := range p.got {
		s = append(s, e.Seq)
	}
	return s
}

func run(t *testing.T, q *Queue, pub Publisher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, pub) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestQueueOrderOutageAndDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := NewQueue(QueueConfig{Topic: "t/events", Size: 5})
		if err != nil {
			t.Fatal(err)
		}
		pub := &flakyPub{}
		stop := run(t, q, pub)
		defer stop()
		for i := range 3 {
			q.Add(Event{Event: TunnelOpened, Tunnel: fmt.Sprint(i)})
		}
		synctest.Wait()
		if got := fmt.Sprint(pub.seqs()); got != "[1 2 3]" {
			t.Fatalf("published %s, want [1 2 3]", got)
		}
		// Offline: 8 events into a queue of 5 drop the 3 oldest.
		pub.set(true)
		for range 8 {
			q.Add(Event{Event: StreamEnded})
		}
		time.Sleep(10 * time.Minute) // fake time: many failed retries
		synctest.Wait()
		st := q.Stats()
		if st.Queued != 5 || st.Dropped != 3 || st.Published != 3 || st.Failures == 0 || st.LastError != "not connected" {
			t.Fatalf("stats while down: %+v", st)
		}
		pub.set(false)
		time.Sleep(time.Minute + time.Millisecond) // at most one backoff
		synctest.Wait()
		if got := fmt.Sprint(pub.seqs()); got != "[1 2 3 7 8 9 10 11]" {
			t.Fatalf("published %s, want [1 2 3 7 8 9 10 11]", got)
		}
		if st := q.Stats(); st.Queued != 0 || st.Published != 8 {
			t.Fatalf("stats after: %+v", st)
		}
	})
}

func TestQueueBackoffGrowsAndIsBounded(t *testing.T) {
	q, _ := NewQueue(QueueConfig{Topic: "x"})
	for n := 1; n < 40; n++ {
		for range 50 {
			d := q.backoff(n)
			ceil := min(DefaultRetryMax, DefaultRetryMin<<min(n-1, 29))
			if d <= 0 || d > ceil {
				t.Fatalf("backoff(%d) = %s, want in (0, %s]", n, d, ceil)
			}
		}
	}
}

func TestNewQueueNeedsTopic(t *testing.T) {
	if _, err := NewQueue(QueueConfig{}); err == nil {
		t.Fatal("no error without a topic")
	}
}

func TestTunnelIDStable(t *testing.T) {
	// The id must never change: operators grep old journals for it, and
	// state files are named by it.
	if got := TunnelID("AQGAAXiG0token"); got != "3d5379fb5d5162e40e3f8b54" {
		t.Fatalf("TunnelID = %q", got)
	}
}
