package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Publisher sends one message at QoS 1 and returns once the broker has
// acknowledged it (PUBACK), or with an error: not connected, refused,
// timed out. Both notification sources provide one: the MQTT source
// publishes on its own connection, the Greengrass source through IPC
// PublishToIoTCore.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Defaults of QueueConfig.
const (
	DefaultQueueSize  = 1000
	DefaultRetryMin   = time.Second
	DefaultRetryMax   = time.Minute
	DefaultPubTimeout = 30 * time.Second
)

// QueueConfig configures a Queue. Topic is required.
type QueueConfig struct {
	Topic string
	// Size bounds the events kept while they cannot be published; when it
	// is full the oldest is dropped and counted. Default 1000 (about 400
	// KiB at most).
	Size int
	// RetryMin and RetryMax bound the full-jitter backoff between failed
	// publishes (default 1 s and 1 min); Timeout bounds one publish (30 s).
	RetryMin, RetryMax, Timeout time.Duration
	Logger                      *slog.Logger
}

// QueueStats is the queue's state for the status socket and the metrics.
type QueueStats struct {
	Topic       string    `json:"topic"`
	Queued      int       `json:"queued"`
	Published   uint64    `json:"published"`
	Dropped     uint64    `json:"dropped"`
	Failures    uint64    `json:"failures"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Queue publishes events in order, one at a time, holding at most Size of
// them while the publisher fails (offline, broker restarting).
type Queue struct {
	cfg  QueueConfig
	log  *slog.Logger
	wake chan struct{}

	mu    sync.Mutex
	items []Event
	seq   uint64
	st    QueueStats
}

// NewQueue returns a queue for cfg, with defaults filled in.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	if cfg.Topic == "" {
		return nil, errors.New("audit: a topic is required")
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultQueueSize
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultPubTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Queue{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), st: QueueStats{Topic: cfg.Topic}}, nil
}

// Add numbers the event and queues it; it never blocks. When the queue is
// full the oldest event is dropped.
func (q *Queue) Add(e Event) {
	q.mu.Lock()
	q.seq++
	e.Seq = q.seq
	if len(q.items) >= q.cfg.Size {
		q.items = q.items[1:]
		q.st.Dropped++
		if n := q.st.Dropped; n == 1 || n%100 == 0 {
			q.log.Warn("audit queue full: dropping the oldest events until the broker takes them again",
				"topic", q.cfg.Topic, "dropped", n, "queue_size", q.cfg.Size)
		}
	}
	q.items = append(q.items, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Stats returns the queue's counters.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.st
	s.Queued = len(q.items)
	return s
}

// Run publishes until ctx ends (nil). Events still queued then are lost.
func (q *Queue) Run(ctx context.Context, pub Publisher) error {
	failures := 0
	for {
		e, ok := q.head()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-q.wake:
				continue
			}
		}
		err := q.publish(ctx, pub, &e)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if failures > 0 {
				q.log.Info("audit events are being published again", "topic", q.cfg.Topic, "after_failures", failures)
			}
			failures = 0
			q.done(e.Seq)
			continue
		}
		failures++
		delay := q.backoff(failures)
		q.failed(err, failures, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (q *Queue) head() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return Event{}, false
	}
	return q.items[0], true
}

func (q *Queue) publish(ctx context.Context, pub Publisher, e *Event) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit event: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	defer cancel()
	return pub.Publish(ctx, q.cfg.Topic, payload)
}

// done removes the published event unless an overflow already dropped it.
func (q *Queue) done(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 && q.items[0].Seq == seq {
		q.items[0] = Event{}
		q.items = q.items[1:]
	}
	q.st.Published++
}

func (q *Queue) failed(err error, failures int, delay time.Duration) {
	q.mu.Lock()
	q.st.Failures++
	q.st.LastError = err.Error()
	q.st.LastErrorAt = time.Now()
	queued := len(q.items)
	q.mu.Unlock()
	// The first failure of an outage, then now and then: flash is finite.
	level := slog.LevelDebug
	if failures == 1 || failures%20 == 0 {
		level = slog.LevelWarn
	}
	q.log.Log(context.Background(), level, "cannot publish audit events; keeping them queued and retrying",
		"topic", q.cfg.Topic, "err", err, "queued", queued, "retry_in", delay.Round(time.Millisecond),
		"hint", "check the connection and that the policy allows iot:Publish on the audit topic")
}

// backoff is a full-jitter delay in (0, min(RetryMax, RetryMin*2^(n-1))].
func (q *Queue) backoff(n int) time.Duration {
	ceil := q.cfg.RetryMax
	if n < 30 {
		ceil = min(ceil, q.cfg.RetryMin<<(n-1))
	}
	return rand.N(ceil) + 1
}
